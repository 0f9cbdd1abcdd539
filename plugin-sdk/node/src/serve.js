/**
 * Serving a plugin: read the environment, connect, handshake, answer the proxy's calls until
 * `stop` (or until the connection closes).
 *
 * @module
 */

import { realpathSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

import { codes, EnvError, InvalidResult, isRpcError, RpcError, toErrorObject } from './errors.js';
import { declarationHints } from './hints.js';
import { createLogger } from './log.js';
import { ConfigReporter, DEFAULT_MANAGER_TIMEOUT_MS, Manager } from './manager.js';
import { DEFAULT_MAX_LINE_BYTES, Peer } from './peer.js';
import { HOOK_ARGUMENTS, HOOKS, MANAGER, METHOD_NAMES, pluginTypeOf, REPORTER } from './plugins.js';
import { hasEmptyResult, PROTOCOL, resultError } from './protocol.js';
import * as check from './validate.js';
import { asPatch, PATCHED_ARGUMENT } from './patch.js';

/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = PROTOCOL.protocol_version;

/** How long the handshake may take (ms). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * What gatekeeper tells a plugin through its environment.
 *
 * @typedef {object} PluginEnv
 * @property {string} socketPath `GATEKEEPER_SOCKET`: the Unix socket to connect to
 * @property {string} token `GATEKEEPER_TOKEN`: the one-time secret sent in the handshake
 * @property {string} name `GATEKEEPER_PLUGIN_NAME` (default: the type)
 * @property {string} pluginType `GATEKEEPER_PLUGIN_TYPE`
 * @property {number} protocolVersion `GATEKEEPER_PROTOCOL_VERSION`
 * @property {number} maxLineBytes `GATEKEEPER_MAX_LINE_BYTES` (default 16 MiB)
 * @property {number} instance `GATEKEEPER_PLUGIN_INSTANCE` (default 0)
 */

/**
 * Reads the `GATEKEEPER_*` variables. `GATEKEEPER_SOCKET`, `GATEKEEPER_TOKEN`,
 * `GATEKEEPER_PLUGIN_TYPE` and `GATEKEEPER_PROTOCOL_VERSION` are required;
 * `GATEKEEPER_PLUGIN_NAME` defaults to the type, `GATEKEEPER_MAX_LINE_BYTES` to 16 MiB and
 * `GATEKEEPER_PLUGIN_INSTANCE` to 0.
 *
 * @param {Record<string, string | undefined>} [environ] default `process.env`
 * @returns {PluginEnv}
 * @throws {EnvError} when a variable is missing ("run me from gatekeeper") or unusable
 */
export function readEnv(environ = process.env) {
  const get = (name) => {
    const value = environ[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const required = (name) => {
    const value = get(name);
    if (value === undefined) {
      throw new EnvError(
        `environment variable ${name} is not set: this program is a gatekeeper plugin, run me from ` +
          'gatekeeper (it sets GATEKEEPER_SOCKET, GATEKEEPER_TOKEN and the other GATEKEEPER_* variables)',
        name,
      );
    }
    return value;
  };
  const number = (name, value) => {
    const trimmed = value.trim();
    if (!/^\d+$/.test(trimmed)) {
      throw new EnvError(`environment variable ${name} has an invalid value \`${value}\`: expected a decimal integer`, name);
    }
    return Number(trimmed);
  };
  const socketPath = required('GATEKEEPER_SOCKET');
  const token = required('GATEKEEPER_TOKEN');
  const pluginType = required('GATEKEEPER_PLUGIN_TYPE');
  if (!Object.hasOwn(HOOKS, pluginType)) {
    throw new EnvError(
      `environment variable GATEKEEPER_PLUGIN_TYPE has an invalid value \`${pluginType}\`: expected one of ${Object.keys(HOOKS).join(', ')}`,
      'GATEKEEPER_PLUGIN_TYPE',
    );
  }
  const protocolVersion = number('GATEKEEPER_PROTOCOL_VERSION', required('GATEKEEPER_PROTOCOL_VERSION'));
  const maxLine = get('GATEKEEPER_MAX_LINE_BYTES');
  const instance = get('GATEKEEPER_PLUGIN_INSTANCE');
  return {
    socketPath,
    token,
    name: get('GATEKEEPER_PLUGIN_NAME') ?? pluginType,
    pluginType,
    protocolVersion,
    maxLineBytes: maxLine === undefined ? DEFAULT_MAX_LINE_BYTES : number('GATEKEEPER_MAX_LINE_BYTES', maxLine),
    instance: instance === undefined ? 0 : number('GATEKEEPER_PLUGIN_INSTANCE', instance),
  };
}


/**
 * The result object a hook returned: nothing means `{}`; anything but an object is the
 * plugin's bug, answered `-32603` (the proxy would otherwise see a result of the wrong type
 * and restart the plugin).
 */
function resultOf(method, value) {
  if (value === undefined || value === null || hasEmptyResult(method)) return {};
  if (!check.isObject(value)) {
    throw new InvalidResult(
      `${METHOD_NAMES[method]}() returned ${Array.isArray(value) ? 'an array' : `a ${typeof value}`}; ` +
        'it must return an object (see docs/protocol.md) or nothing',
      method,
    );
  }
  const error = resultError(method, value);
  if (error !== undefined) {
    throw new InvalidResult(`${METHOD_NAMES[method]}() returned a result the protocol cannot carry: ${error}`, method);
  }
  return value;
}

/**
 * The hooks `plugin` declares: its `hooks()` (or a `hooks` array property).
 *
 * @returns {string[]}
 */
function declaredHooks(plugin, type, log) {
  const declared = typeof plugin.hooks === 'function' ? plugin.hooks() : plugin.hooks;
  if (!Array.isArray(declared) || declared.some((hook) => typeof hook !== 'string')) {
    throw new TypeError('hooks() must return an array of hook names');
  }
  for (const hook of declared) {
    if (!HOOKS[type].includes(hook)) {
      log.warn(`declaring \`${hook}\`, which is not a hook of ${type} plugins; gatekeeper ignores it`);
    }
  }
  return [...new Set(declared)];
}

/**
 * The hooks whose body `plugin` wants: its `bodies()` (or a `bodies` array property), if any.
 *
 * @returns {string[]}
 */
function declaredBodies(plugin, hooks, log) {
  const wanted = typeof plugin.bodies === 'function' ? plugin.bodies() : (plugin.bodies ?? []);
  if (!Array.isArray(wanted) || wanted.some((hook) => typeof hook !== 'string')) {
    throw new TypeError('bodies() must return an array of hook names');
  }
  for (const hook of wanted) {
    if (!hooks.includes(hook)) {
      log.warn(`wanting the body of \`${hook}\`, which is not declared; gatekeeper ignores it`);
    }
  }
  return [...new Set(wanted)];
}

/**
 * The handshake's `parts`: the request parts `modifyRequest` needs (`requestParts()`), if any
 * and if `modify_request` is declared.
 *
 * @returns {{parts?: {modify_request: string[]}}}
 */
function requestPartsOf(plugin, hooks) {
  const parts = typeof plugin.requestParts === 'function' ? plugin.requestParts() : [];
  if (!Array.isArray(parts) || parts.some((part) => typeof part !== 'string')) {
    throw new TypeError('requestParts() must return an array of part names');
  }
  return parts.length > 0 && hooks.includes('modify_request') ? { parts: { modify_request: [...parts] } } : {};
}

/**
 * The hooks `plugin` does not want sent twice: its `noRetry()` (or a `noRetry` array property),
 * if any.
 *
 * @returns {string[]}
 */
function declaredNoRetry(plugin, hooks, log) {
  const named = typeof plugin.noRetry === 'function' ? plugin.noRetry() : (plugin.noRetry ?? []);
  if (!Array.isArray(named) || named.some((hook) => typeof hook !== 'string')) {
    throw new TypeError('noRetry() must return an array of hook names');
  }
  for (const hook of named) {
    if (!hooks.includes(hook)) {
      log.warn(`\`no_retry\` for \`${hook}\`, which is not declared; gatekeeper ignores it`);
    }
  }
  return [...new Set(named)];
}

/**
 * Answers one call from the proxy: an undeclared hook is refused (`-32601`), a hook goes to
 * its method, the lifecycle methods to `configure` / `start` / `heartbeat` / `stop`, anything
 * else is `-32601`. Errors become error objects: {@link RpcError} keeps its code, bad params
 * are `-32602`, anything else `-32603` (logged with its stack).
 *
 * @returns {Promise<import('./peer.js').Outcome>}
 */
async function dispatch(context, method, params) {
  const { plugin, type, declared, log } = context;
  try {
    if (!check.isObject(params)) throw RpcError.invalidParams('`params` must be an object');
    if (HOOKS[type].includes(method)) {
      if (!declared.has(method)) {
        throw new RpcError(codes.METHOD_NOT_FOUND, `\`${method}\` was not declared in the handshake`);
      }
      const args = HOOK_ARGUMENTS[method](params);
      const patched = type === 'modifier' ? PATCHED_ARGUMENT[method] : undefined;
      const sent = patched === undefined ? undefined : structuredClone(args[patched[0]]);
      const value = await plugin[METHOD_NAMES[method]](...args, params);
      if (patched !== undefined && check.isObject(value)) {
        // Turned into a patch first, then checked: the small patch instead of the whole
        // returned request (its unchanged parts were valid when sent). A value too malformed to
        // compare, or a patch that fails the check, is checked whole below, so the error names
        // what the hook returned.
        let converted = value;
        try {
          converted = asPatch(patched[1], sent, value);
        } catch {
          converted = value;
        }
        if (converted !== value) {
          try {
            return { result: resultOf(method, converted) };
          } catch {
            // checked whole below
          }
        }
      }
      return { result: resultOf(method, value) };
    }
    switch (method) {
      case 'configure': {
        const config = params.config === undefined || params.config === null ? {} : check.object(params.config, 'config');
        if (params.check === true) await plugin.check(config);
        else await plugin.configure(config);
        break;
      }
      case 'start':
        await plugin.start();
        if (type === 'upstream') await plugin.startUpstreams(context.manager);
        break;
      case 'heartbeat':
        await plugin.heartbeat();
        break;
      case 'stop':
        await plugin.stop();
        break;
      default:
        throw new RpcError(codes.METHOD_NOT_FOUND, `method not found: ${method}`);
    }
    return { result: {} };
  } catch (error) {
    if (isRpcError(error)) {
      log.warn(`answering \`${method}\` with error ${error.code}: ${error.message}`);
    } else if (error instanceof InvalidResult) {
      log.error(`${error.message}; answering \`${method}\` with an internal error instead of sending it`);
    } else {
      log.error(`\`${method}\` failed; answering with an internal error`, error);
    }
    return { error: toErrorObject(error) };
  }
}

/**
 * The type `plugin` serves, checked against the type gatekeeper runs it as.
 *
 * @param {unknown} plugin
 * @param {string | undefined} expected
 * @returns {string}
 * @throws {EnvError}
 */
function checkType(plugin, expected) {
  const type = pluginTypeOf(plugin);
  if (type === undefined) {
    throw new EnvError(
      'the plugin must be an instance of UpstreamPlugin, ModifierPlugin, RouterPlugin, LoadBalancerPlugin or MetricPlugin',
    );
  }
  if (expected !== undefined && expected !== type) {
    throw new EnvError(
      `gatekeeper started this program as a \`${expected}\` plugin, but it is a \`${type}\` plugin`,
      'GATEKEEPER_PLUGIN_TYPE',
    );
  }
  return type;
}

/**
 * Serves `plugin` over an open connection: what {@link serve} does once connected; use it in
 * tests (with a socket pair) or for other transports. Handshakes with `env.token`, protocol
 * version 1 and the plugin's declared hooks, then answers calls until `stop` has been answered
 * or the connection closes.
 *
 * @param {import('./plugins.js').Plugin} plugin an instance of one of the type classes
 * @param {import('node:stream').Duplex} socket a connected socket (or any duplex stream)
 * @param {Partial<PluginEnv>} [env] `token` is required; `pluginType` (checked against the
 *   plugin's), `maxLineBytes` and `name` are optional
 * @param {object} [options]
 * @param {import('./log.js').Logger} [options.logger] where SDK log lines go (default stderr)
 * @param {number} [options.managerTimeoutMs] per-call timeout of the manager (default 10 s)
 * @returns {Promise<void>} resolves once `stop` has been answered or the connection has
 *   closed; rejects if the plugin is not a typed plugin, the types differ, the handshake fails,
 *   or gatekeeper sent a line over the limit or bytes that are not UTF-8
 */
export async function run(plugin, socket, env = {}, options = {}) {
  let type;
  try {
    type = checkType(plugin, env.pluginType);
  } catch (error) {
    socket.destroy();
    throw error;
  }
  const log = options.logger ?? createLogger();
  if (env.protocolVersion !== undefined && env.protocolVersion !== PROTOCOL_VERSION) {
    log.warn(
      `gatekeeper speaks protocol version ${env.protocolVersion}, this SDK ${PROTOCOL_VERSION}; the handshake will likely be refused`,
    );
  }
  let hooks;
  let bodies;
  let noRetry;
  let parts;
  try {
    hooks = declaredHooks(plugin, type, log);
    for (const hint of declarationHints(plugin, type, hooks)) log.warn(hint);
    bodies = declaredBodies(plugin, hooks, log);
    noRetry = declaredNoRetry(plugin, hooks, log);
    parts = requestPartsOf(plugin, hooks);
  } catch (error) {
    socket.destroy();
    throw error;
  }
  const context = { plugin, type, declared: new Set(hooks), log, manager: null };
  const peer = new Peer(socket, {
    maxLineBytes: env.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    log,
    onRequest: (method, params) => dispatch(context, method, params),
    afterReply: (method) => {
      if (method === 'stop') peer.endAfterFlush();
    },
  });
  plugin[REPORTER] = new ConfigReporter(peer, options.managerTimeoutMs ?? DEFAULT_MANAGER_TIMEOUT_MS);
  if (type === 'upstream') {
    context.manager = new Manager(peer, options.managerTimeoutMs ?? DEFAULT_MANAGER_TIMEOUT_MS);
    plugin[MANAGER] = context.manager;
  }
  try {
    const accepted = await peer.request(
      'handshake',
      {
        token: String(env.token ?? ''),
        protocol_version: PROTOCOL_VERSION,
        hooks,
        ...(bodies.length > 0 ? { bodies } : {}),
        ...(noRetry.length > 0 ? { no_retry: noRetry } : {}),
        ...parts,
      },
      HANDSHAKE_TIMEOUT_MS,
    );
    log.debug(`handshake accepted: ${JSON.stringify(accepted)}`);
  } catch (error) {
    peer.close();
    throw new Error(`handshake with gatekeeper failed: ${error.message}`, { cause: error });
  }
  const closed = await peer.closed;
  switch (closed.reason) {
    case 'local':
      log.debug('stopped');
      return;
    case 'eof':
      log.info('gatekeeper closed the connection');
      return;
    case 'io':
      log.warn(`the connection to gatekeeper broke: ${closed.error?.message}`);
      return;
    default:
      throw new Error(`the connection to gatekeeper failed: ${closed.error?.message ?? closed.reason}`);
  }
}

/**
 * Connects to a Unix socket.
 *
 * @param {string} path
 * @returns {Promise<net.Socket>}
 */
export function connect(path) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    const onError = (error) => reject(new Error(`could not connect to the gatekeeper socket ${path}: ${error.message}`));
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * The file of the code that called `fn` (a path), or `undefined` when the stack does not say.
 *
 * @param {Function} fn
 * @returns {string | undefined}
 */
function callerFile(fn) {
  const savedPrepare = Error.prepareStackTrace;
  const savedLimit = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = 5;
    Error.prepareStackTrace = (_, callsites) => callsites;
    const holder = {};
    Error.captureStackTrace(holder, fn);
    const sites = /** @type {any} */ (holder).stack;
    const name = Array.isArray(sites) ? sites.map((site) => site.getFileName()).find((file) => typeof file === 'string') : undefined;
    if (name === undefined) return undefined;
    return name.startsWith('file:') ? fileURLToPath(name) : name;
  } catch {
    return undefined;
  } finally {
    Error.prepareStackTrace = savedPrepare;
    Error.stackTraceLimit = savedLimit;
  }
}

/** Whether `file` is the program node runs (`process.argv[1]`). */
function isMainModule(file) {
  const main = process.argv[1];
  if (file === undefined || main === undefined) return false;
  const real = (path) => {
    try {
      return realpathSync(path);
    } catch {
      return path;
    }
  };
  return real(file) === real(main);
}

/**
 * Serves a plugin for the life of the process: reads the `GATEKEEPER_*` environment, connects
 * to the socket, handshakes, and answers calls until `stop` has been answered or the
 * connection closes. Then it exits the process: code 0 after a normal end; 2 (with the reason
 * on stderr) when the program was not started by gatekeeper or runs as the wrong type; 1 when
 * connecting, the handshake or the connection failed.
 *
 * Call it once, as the last thing of the program: `serve(new MyPlugin());`
 *
 * When the module calling `serve` is imported rather than run (by a test, say) and
 * `GATEKEEPER_SOCKET` is not set, it does nothing and resolves to `null`: the test can import
 * the plugin's class from the same file. Run by hand without gatekeeper, it still exits with
 * code 2 and says to run it from gatekeeper.
 *
 * @param {import('./plugins.js').Plugin} plugin
 * @param {object} [options]
 * @param {boolean} [options.exit] call `process.exit(code)` at the end (default `true`); with
 *   `false`, resolve to the code instead (and set `process.exitCode`)
 * @param {Record<string, string | undefined>} [options.env] default `process.env`
 * @param {import('./log.js').Logger} [options.logger] where SDK log lines go (default stderr)
 * @returns {Promise<number | null>} the exit code (only when `exit` is `false`), or `null` when
 *   it did nothing (imported without `GATEKEEPER_SOCKET`)
 */
export async function serve(plugin, options = {}) {
  const environ = options.env ?? process.env;
  if ((environ.GATEKEEPER_SOCKET ?? '') === '' && !isMainModule(callerFile(serve))) {
    (options.logger ?? createLogger()).debug('serve(): not run as the main module and GATEKEEPER_SOCKET is not set: not serving');
    return null;
  }
  let code = 0;
  try {
    const env = readEnv(environ);
    checkType(plugin, env.pluginType);
    const socket = await connect(env.socketPath);
    await run(plugin, socket, env, { logger: options.logger });
  } catch (error) {
    code = error instanceof EnvError ? 2 : 1;
    process.stderr.write(`error: ${error.message}\n`);
  }
  if (options.exit === false) {
    process.exitCode = code;
    return code;
  }
  process.exit(code);
}
