/**
 * The protocol's data types (docs/protocol.md, "Data types") as JSDoc, and header helpers.
 *
 * Objects travel as they are on the wire: field names are snake_case (`prefixless_path`,
 * `remote_addr`, `timeout_ms`, `backend_id`, …), exactly as in docs/protocol.md.
 *
 * @module
 */

/**
 * Headers: `[name, value]` pairs, in order, duplicates kept. Names the proxy sends are
 * lower-case.
 *
 * @typedef {Array<[string, string]>} Headers
 */

/**
 * A client's request as plugins see it. The SDK fills the optional fields the Rust types
 * default (`listener`, `remote_addr`, `host`, `prefixless_path` to `""`, `headers` to `[]`,
 * `context` to `{}`), so hooks can use them without checks.
 *
 * @typedef {object} Request
 * @property {string} listener name of the listener it arrived on (e.g. `http-public`)
 * @property {string} remote_addr the client's `ip:port`
 * @property {string} method `GET`, `POST`, …
 * @property {string} host the `Host` header, port included if sent
 * @property {string} path the path as received
 * @property {string} [prefix] the matched prefix segment
 * @property {string} prefixless_path the path the backend receives
 * @property {string} [query] the query string without `?`
 * @property {Headers} headers all headers, in order, names lower-case
 * @property {string} [upstream] the id of the chosen upstream (set it in `modifyRequest` to
 *   send the request elsewhere)
 * @property {Record<string, unknown>} context values plugins attach for later hooks of the
 *   same request
 * @property {string} [body_base64] the body, base64: only in `modifyRequest`, only for a plugin
 *   that wants it (`bodies()`); absent in a returned request means unchanged ({@link bodyBytes})
 */

/**
 * An HTTP response: a backend's (without body; bodies stream), the proxy's own error response,
 * or one a modifier answers with.
 *
 * @typedef {object} Response
 * @property {number} status HTTP status; a plugin may set 200–599
 * @property {Headers} headers headers, in order
 * @property {string} [body] UTF-8 body; when a hook sets it, it replaces the body (and wins
 *   over `body_base64`)
 * @property {string} [body_base64] the body, base64, for a plugin that wants it (`bodies()`);
 *   absent in a returned response (with `body` absent too) means unchanged ({@link bodyBytes})
 * @property {boolean} [body_omitted] `true` when the plugin wants the body but the backend's
 *   was over `max_plugin_body`: it streams to the client unchanged unless the plugin sets one
 */

/**
 * An upstream (a service) in the proxy's registry.
 *
 * @typedef {object} Upstream
 * @property {string} id unique id
 * @property {string} [name] display name (default `""`)
 * @property {number} [timeout_ms] time the backend has to answer with headers
 * @property {string[]} [protocols] listener names that may route here (`[]`: all)
 * @property {string[]} [hostnames] Host names (no port) that route here
 * @property {string[]} [prefixes] first path segments (no `/`) that route here
 * @property {string} [balancer] `random` (default), `round_robin` or `least_outstanding`
 * @property {Record<string, unknown>} [extra] free-form
 */

/**
 * A backend (an instance) of an upstream.
 *
 * @typedef {object} Backend
 * @property {string} id unique within its upstream
 * @property {string} address `http://host[:port][/base-path]`
 * @property {Record<string, unknown>} [extra] free-form
 */

/**
 * What went wrong, for `modifyErrorResponse`.
 *
 * @typedef {object} ProxyError
 * @property {string} kind `no_route`, `no_backend`, `backend_unreachable`, `timeout`,
 *   `plugin_failed`, `bad_request` or `internal`
 * @property {string} message a human-readable description
 */

/**
 * What `modifyRequest` returns: `{}` (or nothing) leaves the request unchanged, `{request}`
 * replaces it (the SDK sends a patch of what changed), `{patch}` changes only the parts it names
 * (see `patch`), `{response}` answers the client directly.
 *
 * @typedef {{request?: Request, patch?: object, response?: Response, cache?: CacheInstruction}} ModifyRequestResult
 */

/**
 * A `modifyRequest` result's `cache`: gatekeeper may reuse the decision for `ttl_ms` on requests
 * whose `key` parts are equal (`method`, `path`, `query`, `host`, `client`, `header:NAME`,
 * `context:KEY`), without calling the plugin. See {@link cached}.
 *
 * @typedef {{ttl_ms: number, key: string[]}} CacheInstruction
 */

/**
 * What `modifyResponse` / `modifyErrorResponse` return: `{}` (or nothing) leaves the response
 * unchanged, `{response}` replaces it, `{patch}` changes its status and headers.
 *
 * @typedef {{response?: Response, patch?: object}} ModifyResponseResult
 */

/**
 * What `routeRequest` returns. `upstream` `null` or absent (or returning nothing): no route
 * (404).
 *
 * @typedef {object} RouteRequestResult
 * @property {string | null} [upstream] the id of the upstream to use
 * @property {string} [prefixless_path] the path the backend receives (absent: `path`)
 * @property {Request} [request] a changed request, as in `modifyRequest`
 */

/**
 * What `getBackend` returns. `backend_id` `null` or absent (or returning nothing): no backend
 * available (503).
 *
 * @typedef {{backend_id?: string | null}} GetBackendResult
 */

/**
 * One metric record; the fields per kind are in docs/protocol.md ("Metric plugins").
 *
 * @typedef {Record<string, unknown>} MetricRecord
 */

/**
 * The body of a request or response as bytes: a response's text `body` (UTF-8) if set, else
 * `body_base64` decoded; `undefined` when neither is present (not sent, or omitted). Bodies are
 * sent only to a plugin that declares it wants them (`bodies()`).
 *
 * @param {{ body?: string, body_base64?: string }} message
 * @returns {Buffer | undefined}
 */
export function bodyBytes(message) {
  if (typeof message.body === 'string') return Buffer.from(message.body, 'utf8');
  if (typeof message.body_base64 !== 'string') return undefined;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(message.body_base64) || message.body_base64.length % 4 !== 0) {
    throw new TypeError('body_base64 is not valid base64');
  }
  return Buffer.from(message.body_base64, 'base64');
}

/**
 * Replaces the body of a request or response in place: sets `body_base64` and deletes a text
 * `body` (which would win).
 *
 * @param {{ body?: string, body_base64?: string }} message changed in place
 * @param {Uint8Array | string} data the new body (a string is encoded as UTF-8)
 * @returns {typeof message} the same object, for chaining
 */
export function setBodyBytes(message, data) {
  delete message.body;
  message.body_base64 = Buffer.from(data).toString('base64');
  return message;
}

/**
 * The first value of a header, by case-insensitive name.
 *
 * @param {Headers | undefined | null} headers
 * @param {string} name
 * @returns {string | undefined} the value, or `undefined` when the header is absent
 */
export function header(headers, name) {
  if (!Array.isArray(headers)) return undefined;
  const wanted = name.toLowerCase();
  for (const pair of headers) {
    if (Array.isArray(pair) && typeof pair[0] === 'string' && pair[0].toLowerCase() === wanted) {
      return pair[1];
    }
  }
  return undefined;
}

/**
 * Sets a header in place: removes every earlier value of it (case-insensitive) and appends
 * `[name in lower case, value]`.
 *
 * @param {Headers} headers changed in place
 * @param {string} name
 * @param {string | number} value
 * @returns {Headers} the same array, for chaining
 */
export function setHeader(headers, name, value) {
  removeHeader(headers, name);
  headers.push([name.toLowerCase(), String(value)]);
  return headers;
}

/**
 * Removes every value of a header in place (case-insensitive).
 *
 * @param {Headers} headers changed in place
 * @param {string} name
 * @returns {Headers} the same array, for chaining
 */
export function removeHeader(headers, name) {
  const wanted = name.toLowerCase();
  let kept = 0;
  for (const pair of headers) {
    if (!(Array.isArray(pair) && typeof pair[0] === 'string' && pair[0].toLowerCase() === wanted)) {
      headers[kept++] = pair;
    }
  }
  headers.length = kept;
  return headers;
}

/**
 * A `modifyRequest` result with a cache instruction: gatekeeper may give the same decision,
 * without calling the plugin, for `ttlMs` milliseconds (capped at one hour) to requests whose
 * `key` parts equal this one's, e.g. `cached({}, 30000, ['header:authorization'])`.
 *
 * @param {ModifyRequestResult} result `{}`, `{request}` or `{response}`
 * @param {number} ttlMs
 * @param {string[]} key
 * @returns {ModifyRequestResult} a copy of `result` with `cache`
 */
export function cached(result, ttlMs, key) {
  if (!Array.isArray(key)) throw new TypeError("key is an array of parts, e.g. ['header:authorization']");
  return { ...(result ?? {}), cache: { ttl_ms: Math.trunc(ttlMs), key: [...key] } };
}
