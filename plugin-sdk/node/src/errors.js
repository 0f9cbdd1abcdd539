/**
 * Errors: {@link RpcError}, what a hook throws to answer the proxy with a JSON-RPC error (and
 * what a {@link Manager} call rejects with), the protocol's error {@link codes}, and
 * {@link EnvError}, why {@link serve} could not start.
 *
 * @module
 */

/**
 * The protocol's error codes (docs/protocol.md, "Errors"). A plugin may use any other integer
 * for its own errors; the proxy logs code and message.
 */
export const codes = Object.freeze({
  /** The line is not JSON. */
  PARSE_ERROR: -32700,
  /** JSON, but not a JSON-RPC message. */
  INVALID_REQUEST: -32600,
  /** Unknown method, or a hook that was not declared in the handshake. */
  METHOD_NOT_FOUND: -32601,
  /** Params missing or of the wrong shape. */
  INVALID_PARAMS: -32602,
  /** The answering side failed. */
  INTERNAL_ERROR: -32603,
  /** (proxy) Wrong token, or a request before the handshake. */
  UNAUTHORIZED: -32000,
  /** (proxy) `protocol_version` is not the proxy's. */
  UNSUPPORTED_VERSION: -32001,
  /** (proxy) The upstream named does not exist. */
  UNKNOWN_UPSTREAM: -32010,
  /** (proxy) The id exists with different content, or a prefix / hostname is taken. */
  CONFLICT: -32011,
  /** (proxy) A field's value is unusable (e.g. a backend address). */
  INVALID_VALUE: -32012,
  /** (proxy) The backend named does not exist in its upstream. */
  UNKNOWN_BACKEND: -32013,
  /** (plugin) The plugin cannot answer now; the proxy applies the failure policy. */
  UNAVAILABLE: -32020,
});

/**
 * A JSON-RPC error: `code` and `message` (and optional `data`) as they travel on the wire.
 *
 * Throw one from a hook to answer the proxy with exactly this error (any other exception
 * becomes `-32603` internal error). Manager calls reject with one carrying the proxy's code
 * (e.g. `codes.CONFLICT`); a manager call that times out or loses its connection rejects with
 * `codes.INTERNAL_ERROR`. Rethrowing a manager's `RpcError` from `start` fails `start` with the
 * proxy's code.
 */
export class RpcError extends Error {
  /**
   * @param {number} code JSON-RPC error code (an integer; see {@link codes})
   * @param {string} message human-readable message, logged by the proxy
   * @param {unknown} [data] optional extra value sent as the error's `data`
   */
  constructor(code, message, data) {
    super(message);
    this.name = 'RpcError';
    /** @type {number} */
    this.code = code;
    if (data !== undefined) {
      /** @type {unknown} */
      this.data = data;
    }
  }

  /** @param {string} message @returns {RpcError} an `-32602` invalid params error */
  static invalidParams(message) {
    return new RpcError(codes.INVALID_PARAMS, message);
  }

  /** @param {string} message @returns {RpcError} an `-32603` internal error */
  static internal(message) {
    return new RpcError(codes.INTERNAL_ERROR, message);
  }

  /** @param {string} message @returns {RpcError} an `-32020` unavailable error */
  static unavailable(message) {
    return new RpcError(codes.UNAVAILABLE, message);
  }

  /** @returns {{code: number, message: string, data?: unknown}} the wire error object */
  toJSON() {
    const object = { code: this.code, message: this.message };
    if (this.data !== undefined) object.data = this.data;
    return object;
  }
}

/**
 * Whether `error` is an {@link RpcError} (also one from another copy of this package).
 *
 * @param {unknown} error
 * @returns {error is RpcError}
 */
export function isRpcError(error) {
  return (
    error instanceof RpcError ||
    (error instanceof Error && error.name === 'RpcError' && Number.isInteger(error.code))
  );
}

/**
 * The program was not started by gatekeeper (a `GATEKEEPER_*` variable is missing), or an
 * environment variable has an unusable value, or the plugin does not match the type gatekeeper
 * runs it as. {@link serve} prints the message and exits with code 2.
 */
export class EnvError extends Error {
  /**
   * @param {string} message
   * @param {string} [variable] the variable concerned
   */
  constructor(message, variable) {
    super(message);
    this.name = 'EnvError';
    /** @type {string | undefined} */
    this.variable = variable;
  }
}

/**
 * A hook returned something the protocol cannot carry (not an object, or a result that fails
 * the method's schema in `protocol.json`). The SDK answers the call with `-32603` instead of
 * sending it: gatekeeper would count a malformed result as a protocol violation and restart the
 * plugin. Logged as one error line (no stack: the mistake is in the returned value).
 */
export class InvalidResult extends TypeError {
  /**
   * @param {string} message
   * @param {string} method the wire method
   */
  constructor(message, method) {
    super(message);
    this.name = 'InvalidResult';
    /** @type {string} */
    this.method = method;
  }
}

/**
 * What a thrown value becomes on the wire: an {@link RpcError} keeps its code and message, any
 * other value is an internal error (`-32603`) with its message.
 *
 * @param {unknown} error
 * @returns {{code: number, message: string, data?: unknown}}
 */
export function toErrorObject(error) {
  if (isRpcError(error)) {
    const object = { code: error.code, message: String(error.message) };
    if (error.data !== undefined) object.data = error.data;
    return object;
  }
  if (error instanceof Error) {
    return { code: codes.INTERNAL_ERROR, message: error.message || error.name };
  }
  return { code: codes.INTERNAL_ERROR, message: String(error) };
}
