/**
 * The test host: plays gatekeeper's side of the protocol for one plugin, in memory, so a
 * plugin's tests need no gatekeeper binary. {@link startTestHost} serves the plugin with the
 * SDK's own {@link run} on one end of an in-memory connection and drives the real lifecycle from
 * the other end (handshake, `configure`, `start`, hook calls, `heartbeat`, `stop`): every
 * message is a JSON line both ways, and every hook result is checked against the protocol's
 * schema (`protocol.json`) as gatekeeper checks it.
 *
 * @module
 */

import { RpcError } from '../errors.js';
import { createLogger } from '../log.js';
import { Peer } from '../peer.js';
import { HOOKS, METHOD_NAMES, pluginTypeOf } from '../plugins.js';
import { bodyHooksOf, METHODS, paramsError, PROTOCOL, resultError } from '../protocol.js';
import { run } from '../serve.js';
import { duplexPair } from './duplex.js';

/** How long each step (the handshake, one call, the plugin's end after `stop`) may take by default (ms). */
export const DEFAULT_STEP_TIMEOUT_MS = 5000;

/** The token the test host gives the plugin (and expects back in the handshake). */
const TOKEN = 'test-host-token';

/**
 * The plugin broke the protocol: a bad handshake, a result of the wrong shape (gatekeeper would
 * count it as a failure and restart the plugin), a call it may not make, or a hook the test
 * called that the plugin did not declare.
 */
export class ProtocolViolation extends Error {
  /**
   * @param {string} message
   * @param {string} [method] the method concerned
   */
  constructor(message, method) {
    super(message);
    this.name = 'ProtocolViolation';
    /** @type {string | undefined} */
    this.method = method;
  }
}

/**
 * One call the plugin made on the proxy (a manager method, `apply_batch`, `config_status`), as
 * the test host received it, with what the host answered.
 *
 * @typedef {object} RecordedCall
 * @property {string} method
 * @property {Record<string, unknown>} params
 * @property {unknown} [result] the answer's result
 * @property {{code: number, message: string}} [error] the answer's error
 */

/**
 * How the test host answers a call the plugin makes on the proxy: return the result (or nothing
 * for the method's usual answer), or throw an {@link RpcError} to refuse it.
 *
 * @callback ProxyAnswer
 * @param {string} method
 * @param {Record<string, unknown>} params
 * @returns {unknown}
 */

/** The counts gatekeeper would answer an `apply_batch` with, had every change been new. */
function batchCounts(params) {
  const counts = { upstreams_added: 0, upstreams_removed: 0, backends_added: 0, backends_removed: 0, unchanged: 0 };
  for (const change of params.changes ?? []) {
    const key = { add_upstream: 'upstreams_added', remove_upstream: 'upstreams_removed', add_backend: 'backends_added', remove_backend: 'backends_removed' }[change.op];
    if (key !== undefined) counts[key] += 1;
  }
  return counts;
}

/** A logger that keeps every line in `lines` and passes it on to `next`. */
function recording(lines, next) {
  const at = (level) => (message, error) => {
    lines.push({ level, message });
    next[level](message, error);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Resolves with `promise`'s value, or rejects after `ms` with `what`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A plugin served in memory, after its handshake, `configure` and `start`. Call its hooks with
 * the methods named like the plugin's (`modifyRequest`, `routeRequest`, …) or {@link TestHost#call};
 * end with {@link TestHost#stop}.
 */
export class TestHost {
  /** @type {Peer} */
  #peer;
  /** @type {Promise<void>} */
  #served;
  #timeoutMs;
  #stopped = false;

  /** @internal use {@link startTestHost} */
  constructor(state) {
    this.#peer = state.peer;
    this.#served = state.served;
    this.#timeoutMs = state.timeoutMs;
    /** The plugin type served. @type {string} */
    this.type = state.type;
    /** The params of the plugin's handshake (`hooks`, `bodies`, `no_retry`, `parts`). @type {Record<string, any>} */
    this.handshake = state.handshake;
    /** The hooks the plugin declared that gatekeeper accepts (those of its type). @type {string[]} */
    this.hooks = state.hooks;
    /** The manager calls the plugin made (`add_upstream`, …, `apply_batch`), in order. @type {RecordedCall[]} */
    this.managerCalls = state.managerCalls;
    /** The `config_status` reports the plugin made: each its `error` (a string, or `null` for OK). @type {Array<string | null>} */
    this.configStatus = state.configStatus;
    /** The SDK's log lines about this plugin (warnings at startup, failed hooks). @type {Array<{level: string, message: string}>} */
    this.log = state.log;
    /** What gatekeeper would warn about in its own log (e.g. a declared hook the type does not have). @type {string[]} */
    this.warnings = state.warnings;
  }

  /**
   * Calls `method` on the plugin as gatekeeper would: the params are checked against the
   * method's schema first (a test that sends what gatekeeper never sends fails with a
   * `TypeError`), a hook must have been declared, and the result is checked against the
   * method's result schema.
   *
   * @param {string} method wire name, e.g. `modify_request`
   * @param {Record<string, unknown>} [params]
   * @returns {Promise<any>} the result, as gatekeeper receives it (a returned request or
   *   response arrives as a `patch` of what changed)
   * @throws {RpcError} the plugin's error answer (its `code` and `message`), or `-32603` when
   *   it did not answer in time
   * @throws {ProtocolViolation} a result of the wrong shape, or a hook the plugin did not declare
   */
  async call(method, params = {}) {
    if (!Object.hasOwn(METHODS, method)) throw new TypeError(`\`${method}\` is not a method of the protocol`);
    const isHook = HOOKS[this.type].includes(method);
    if (!isHook && !['configure', 'start', 'heartbeat', 'stop'].includes(method)) {
      throw new TypeError(`gatekeeper never calls \`${method}\` on a ${this.type} plugin`);
    }
    if (isHook && !this.hooks.includes(method)) {
      throw new ProtocolViolation(
        `the plugin did not declare \`${method}\` in its handshake (it declared ${JSON.stringify(this.hooks)}), so gatekeeper never calls it; ` +
          `override \`${METHOD_NAMES[method]}\` (check its spelling) or list it in hooks()`,
        method,
      );
    }
    const wrongParams = paramsError(method, params);
    if (wrongParams !== undefined) throw new TypeError(`these are not params gatekeeper sends: ${wrongParams}`);
    const result = await this.#peer.request(method, params, this.#timeoutMs);
    const wrongResult = resultError(method, result);
    if (wrongResult !== undefined) {
      throw new ProtocolViolation(
        `the plugin answered \`${method}\` with a bad result (gatekeeper would count it as a failure and restart the plugin): ${wrongResult}`,
        method,
      );
    }
    return result;
  }

  /** @param {import('../types.js').Request} request */
  modifyRequest(request) {
    return this.call('modify_request', { request });
  }

  /** @param {import('../types.js').Request} request @param {import('../types.js').Response} response */
  modifyResponse(request, response) {
    return this.call('modify_response', { request, response });
  }

  /**
   * @param {import('../types.js').Request} request
   * @param {import('../types.js').Response} response
   * @param {import('../types.js').ProxyError} error
   */
  modifyErrorResponse(request, response, error) {
    return this.call('modify_error_response', { request, response, error });
  }

  /** @param {import('../types.js').Request} request */
  routeRequest(request) {
    return this.call('route_request', { request });
  }

  /** @param {import('../types.js').Upstream} upstream */
  addUpstream(upstream) {
    return this.call('add_upstream', { upstream });
  }

  /** @param {string} id */
  removeUpstream(id) {
    return this.call('remove_upstream', { id });
  }

  /** @param {string} upstreamId @param {import('../types.js').Backend} backend */
  addBackend(upstreamId, backend) {
    return this.call('add_backend', { upstream_id: upstreamId, backend });
  }

  /** @param {string} upstreamId @param {string} backendId */
  removeBackend(upstreamId, backendId) {
    return this.call('remove_backend', { upstream_id: upstreamId, backend_id: backendId });
  }

  /** @param {string} upstreamId @param {import('../types.js').Request} request */
  getBackend(upstreamId, request) {
    return this.call('get_backend', { upstream_id: upstreamId, request });
  }

  /** @param {Array<Record<string, unknown>>} metrics */
  upstreamMetric(metrics) {
    return this.call('upstream_metric', { metrics });
  }

  /** @param {Array<Record<string, unknown>>} events */
  eventMetric(events) {
    return this.call('event_metric', { events });
  }

  /** @param {Array<Record<string, unknown>>} profiles */
  profilingMetric(profiles) {
    return this.call('profiling_metric', { profiles });
  }

  /** @param {Array<Record<string, unknown>>} metrics */
  pluginMetric(metrics) {
    return this.call('plugin_metric', { metrics });
  }

  /** @param {Array<Record<string, unknown>>} metrics */
  requestMetric(metrics) {
    return this.call('request_metric', { metrics });
  }

  /** Sends a `heartbeat`. */
  async heartbeat() {
    await this.call('heartbeat', {});
  }

  /**
   * Sends `stop` and waits for the plugin to close the connection; closes it anyway after the
   * step timeout. Safe to call twice.
   *
   * @throws {RpcError} when the plugin answered `stop` with an error
   * @throws {Error} when serving failed (e.g. the plugin broke the connection)
   */
  async stop() {
    if (this.#stopped) return;
    this.#stopped = true;
    let failure;
    try {
      await this.call('stop', {});
    } catch (error) {
      failure = error;
    }
    try {
      await within(this.#served, this.#timeoutMs, 'the plugin closing its connection after `stop`');
    } catch (error) {
      failure ??= error;
    } finally {
      this.#peer.close();
    }
    if (failure !== undefined) throw failure;
  }
}

/**
 * Starts `plugin` (an instance of one of the SDK's plugin classes) in memory, as gatekeeper
 * would: serves it with {@link run} over an in-memory connection, answers its handshake (after
 * checking it), sends `configure` with `options.config`, then `start` (answering the manager
 * calls an upstream plugin makes meanwhile), and returns the host once `start` is answered.
 *
 * @example
 * const host = await startTestHost(new TokenAuth(), { config: { tokens: 'a,b' } });
 * try {
 *   const result = await host.modifyRequest(makeRequest({ path: '/x' }));
 *   assert.equal(result.response.status, 401);
 * } finally {
 *   await host.stop();
 * }
 *
 * @param {import('../plugins.js').Plugin} plugin
 * @param {object} [options]
 * @param {string} [options.type] the plugin type gatekeeper runs it as (default: the plugin's)
 * @param {Record<string, unknown>} [options.config] the config map (default `{}`)
 * @param {string} [options.name] the plugin's name (default: the type)
 * @param {ProxyAnswer} [options.answer] answers the plugin's calls on the proxy (default: `{}`,
 *   and for `apply_batch` the counts of its changes)
 * @param {number} [options.timeoutMs] how long each step may take (default 5 s)
 * @param {import('../log.js').Logger} [options.logger] where the SDK's log lines go besides
 *   `host.log` (default: stderr, as when gatekeeper runs the plugin)
 * @returns {Promise<TestHost>}
 * @throws {RpcError} when the plugin refused `configure` or `start` (its code and message)
 * @throws {ProtocolViolation} a bad handshake
 */
export async function startTestHost(plugin, options = {}) {
  const type = options.type ?? pluginTypeOf(plugin);
  if (type === undefined) {
    throw new TypeError('startTestHost needs an instance of UpstreamPlugin, ModifierPlugin, RouterPlugin, LoadBalancerPlugin or MetricPlugin');
  }
  if (!Object.hasOwn(HOOKS, type)) throw new TypeError(`unknown plugin type \`${type}\`: expected one of ${PROTOCOL.plugin_types.join(', ')}`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const name = options.name ?? type;
  const log = [];
  const managerCalls = [];
  const configStatus = [];
  const warnings = [];
  let handshake;
  let hooks = [];
  let shaken;
  const handshakeDone = new Promise((resolve, reject) => {
    shaken = { resolve, reject };
  });

  const answerCall = async (method, params) => {
    if (method === 'handshake') {
      if (handshake !== undefined) throw new RpcError(-32600, 'a second handshake on one connection');
      const problem = handshakeProblem(params);
      if (problem !== undefined) {
        shaken.reject(new ProtocolViolation(`bad handshake: ${problem}`, 'handshake'));
        throw new RpcError(-32602, problem);
      }
      handshake = params;
      hooks = acceptedHooks(type, params, warnings);
      shaken.resolve();
      return { protocol_version: PROTOCOL.protocol_version, name, type };
    }
    if (handshake === undefined) throw new RpcError(-32000, `\`${method}\` before the handshake`);
    const spec = METHODS[method];
    if (spec === undefined || spec.direction === 'proxy_to_plugin' || method === 'handshake' || !spec.called_by.includes(type)) {
      throw new RpcError(-32601, `method not found: ${method} (a ${type} plugin may not call it)`);
    }
    const record = { method, params };
    if (method === 'config_status') configStatus.push(params.error ?? null);
    else managerCalls.push(record);
    try {
      const wrong = paramsError(method, params);
      if (wrong !== undefined) throw RpcError.invalidParams(wrong);
      let result = options.answer === undefined ? undefined : await options.answer(method, params);
      if (result === undefined || result === null) result = method === 'apply_batch' ? batchCounts(params) : {};
      record.result = result;
      return result;
    } catch (error) {
      record.error = { code: Number.isInteger(error.code) ? error.code : -32603, message: String(error.message) };
      throw error;
    }
  };

  const [hostEnd, pluginEnd] = duplexPair();
  const peer = new Peer(hostEnd, {
    remote: 'the plugin',
    log: createLogger({ level: 'off' }),
    onRequest: async (method, params) => {
      try {
        return { result: await answerCall(method, params) };
      } catch (error) {
        return { error: { code: Number.isInteger(error.code) ? error.code : -32603, message: String(error.message) } };
      }
    },
  });
  const served = run(
    plugin,
    pluginEnd,
    { token: TOKEN, protocolVersion: PROTOCOL.protocol_version, pluginType: type, name },
    { logger: recording(log, options.logger ?? createLogger()), managerTimeoutMs: timeoutMs },
  );
  served.catch(() => {}); // reported by the step that waits on it
  const ended = served.then(
    () => {
      throw new Error('the plugin closed its connection');
    },
    (error) => {
      throw error;
    },
  );
  ended.catch(() => {});

  try {
    await within(Promise.race([handshakeDone, ended]), timeoutMs, 'the plugin\'s handshake');
    const host = new TestHost({ peer, served, timeoutMs, type, handshake, hooks, managerCalls, configStatus, log, warnings });
    await Promise.race([host.call('configure', { config: structuredClone(options.config ?? {}) }), ended]);
    await Promise.race([host.call('start', {}), ended]);
    return host;
  } catch (error) {
    peer.close();
    await within(served, timeoutMs, 'the plugin closing').catch(() => {});
    throw error;
  }
}

/** What is wrong with a handshake's params, as gatekeeper refuses it; or `undefined`. */
function handshakeProblem(params) {
  const wrong = paramsError('handshake', params);
  if (wrong !== undefined) return wrong;
  if (params.token !== TOKEN) return `wrong token ${JSON.stringify(params.token)} (expected the value of GATEKEEPER_TOKEN)`;
  if (params.protocol_version !== PROTOCOL.protocol_version) {
    return `protocol_version ${params.protocol_version}, but gatekeeper speaks ${PROTOCOL.protocol_version}`;
  }
  return undefined;
}

/**
 * The hooks of a handshake that gatekeeper accepts for a plugin of `type`; what it ignores
 * (with a warning in its log) goes to `warnings`.
 */
function acceptedHooks(type, params, warnings) {
  const hooks = [];
  for (const hook of params.hooks ?? []) {
    if (HOOKS[type].includes(hook)) hooks.push(hook);
    else warnings.push(`ignoring the hook \`${hook}\`: ${type} plugins do not have it`);
  }
  for (const hook of params.bodies ?? []) {
    if (!hooks.includes(hook) || !bodyHooksOf(type).includes(hook)) {
      warnings.push(`ignoring a body request for \`${hook}\`: not declared, or it gets no body`);
    }
  }
  for (const hook of params.no_retry ?? []) {
    if (!hooks.includes(hook)) warnings.push(`ignoring \`no_retry\` for \`${hook}\`: not declared`);
  }
  return hooks;
}
