/**
 * The plugin classes: {@link Plugin} (the lifecycle every plugin shares) and one class per
 * plugin type. Extend the class of your type, override the hooks you need with `async`
 * methods, and hand an instance to {@link serve}.
 *
 * Wire method names are snake_case, JS methods camelCase; params are unpacked into arguments:
 *
 * | wire method (proxy → plugin) | JS method | arguments |
 * |---|---|---|
 * | `configure` | `configure` | `config` |
 * | `start` | `start` (then `startUpstreams(manager)` for upstream plugins) | |
 * | `heartbeat` | `heartbeat` | |
 * | `stop` | `stop` | |
 * | `modify_request` | `modifyRequest` | `request` |
 * | `modify_response` | `modifyResponse` | `request, response` |
 * | `modify_error_response` | `modifyErrorResponse` | `request, response, error` |
 * | `add_upstream` | `addUpstream` | `upstream` |
 * | `remove_upstream` | `removeUpstream` | `id` |
 * | `route_request` | `routeRequest` | `request` |
 * | `add_backend` | `addBackend` | `upstreamId, backend` |
 * | `remove_backend` | `removeBackend` | `upstreamId, backendId` |
 * | `get_backend` | `getBackend` | `upstreamId, request` |
 * | `upstream_metric` | `upstreamMetric` | `metrics` |
 * | `event_metric` | `eventMetric` | `events` |
 * | `profiling_metric` | `profilingMetric` | `profiles` |
 * | `plugin_metric` | `pluginMetric` | `metrics` |
 * | `request_metric` | `requestMetric` | `metrics` |
 *
 * Every hook also gets the call's whole params object as its last argument, for fields a later
 * protocol version may add.
 *
 * @module
 */

import { hooksOf, PLUGIN_TYPES } from './protocol.js';
import * as check from './validate.js';

/** @typedef {import('./types.js').Request} Request */
/** @typedef {import('./types.js').Response} Response */
/** @typedef {import('./types.js').Upstream} Upstream */
/** @typedef {import('./types.js').Backend} Backend */
/** @typedef {import('./types.js').ProxyError} ProxyError */
/** @typedef {import('./types.js').MetricRecord} MetricRecord */
/** @typedef {import('./types.js').ModifyRequestResult} ModifyRequestResult */
/** @typedef {import('./types.js').ModifyResponseResult} ModifyResponseResult */
/** @typedef {import('./types.js').RouteRequestResult} RouteRequestResult */
/** @typedef {import('./types.js').GetBackendResult} GetBackendResult */
/** @typedef {import('./manager.js').Manager} Manager */

/** The hooks an upstream plugin may declare (from `protocol.json`). */
export const UPSTREAM_HOOKS = hooksOf('upstream');
/** Every hook a modifier can implement, in the order the request path reaches them. */
export const MODIFIER_HOOKS = hooksOf('modifier');
/** Every hook a router can implement. */
export const ROUTER_HOOKS = hooksOf('router');
/** Every hook a load balancer can implement. */
export const LOADBALANCER_HOOKS = hooksOf('loadbalancer');
/** Every hook a metric plugin can implement. */
export const METRIC_HOOKS = hooksOf('metric');

/** The hooks each plugin type may declare, by type name. */
export const HOOKS = Object.freeze(Object.fromEntries(PLUGIN_TYPES.map((type) => [type, hooksOf(type)])));

/** Wire method name → JS method name (`modify_request` → `modifyRequest`), for every hook. */
export const METHOD_NAMES = Object.freeze(
  Object.fromEntries(
    Object.values(HOOKS)
      .flat()
      .map((hook) => [hook, hook.replace(/_([a-z])/g, (_, c) => c.toUpperCase())]),
  ),
);

/**
 * The params of each hook that become the JS method's arguments, in argument order (wire names;
 * the arguments are their camelCase). Kept equal to each params schema's required fields by a
 * test; the TypeScript declarations are generated from it (scripts/generate-types.js).
 */
export const HOOK_PARAMS = Object.freeze({
  modify_request: ['request'],
  modify_response: ['request', 'response'],
  modify_error_response: ['request', 'response', 'error'],
  add_upstream: ['upstream'],
  remove_upstream: ['id'],
  route_request: ['request'],
  add_backend: ['upstream_id', 'backend'],
  remove_backend: ['upstream_id', 'backend_id'],
  get_backend: ['upstream_id', 'request'],
  upstream_metric: ['metrics'],
  event_metric: ['events'],
  profiling_metric: ['profiles'],
  plugin_metric: ['metrics'],
  request_metric: ['metrics'],
});

/**
 * How each hook's params become the JS method's arguments (each check throws `-32602`). A new
 * hook gets its line here and its method in its plugin class below.
 */
export const HOOK_ARGUMENTS = Object.freeze({
  modify_request: (p) => [check.request(p.request)],
  modify_response: (p) => [check.request(p.request), check.response(p.response)],
  modify_error_response: (p) => [check.request(p.request), check.response(p.response), check.proxyError(p.error)],
  add_upstream: (p) => [check.upstream(p.upstream)],
  remove_upstream: (p) => [check.string(p.id, 'id')],
  route_request: (p) => [check.request(p.request)],
  add_backend: (p) => [check.string(p.upstream_id, 'upstream_id'), check.backend(p.backend)],
  remove_backend: (p) => [check.string(p.upstream_id, 'upstream_id'), check.string(p.backend_id, 'backend_id')],
  get_backend: (p) => [check.string(p.upstream_id, 'upstream_id'), check.request(p.request)],
  upstream_metric: (p) => [check.records(p.metrics, 'metrics')],
  event_metric: (p) => [check.records(p.events, 'events')],
  profiling_metric: (p) => [check.records(p.profiles, 'profiles')],
  plugin_metric: (p) => [check.records(p.metrics, 'metrics')],
  request_metric: (p) => [check.records(p.metrics, 'metrics')],
});

/**
 * The hooks of `type` whose JS method `plugin` overrides (compared with `base.prototype`).
 *
 * @param {object} plugin
 * @param {Function} base
 * @param {readonly string[]} hooks
 * @returns {string[]}
 */
function overridden(plugin, base, hooks) {
  return hooks.filter((hook) => plugin[METHOD_NAMES[hook]] !== base.prototype[METHOD_NAMES[hook]]);
}

/** @internal the key under which {@link run} gives an upstream plugin its manager */
export const MANAGER = Symbol.for('gatekeeper-plugin-sdk.manager');

/** @internal the key under which {@link run} gives every plugin its config reporter */
export const REPORTER = Symbol.for('gatekeeper-plugin-sdk.config-reporter');

/**
 * The lifecycle every plugin shares. The proxy calls, in order: `configure`, `start`,
 * `heartbeat` on an interval while the plugin runs, and finally `stop`. Do not extend this
 * class directly: extend the class of your plugin type.
 *
 * Calls arrive concurrently: each runs as its own promise, so a slow hook delays no other.
 * Throw an {@link RpcError} to answer with a specific error code; any other exception is
 * answered as `-32603` internal error (and logged to stderr with its stack).
 */
export class Plugin {
  /** The plugin type this class serves (`upstream`, `modifier`, …); set by each type's class. */
  static pluginType = undefined;

  /**
   * Runs once after the handshake, before `start`, with the plugin's config map (keys and
   * values from gatekeeper's command line and config file). Validate it here: throwing makes
   * gatekeeper report the error and treat it as a failed start.
   *
   * Default: accepts any config and ignores it.
   *
   * @param {Record<string, unknown>} config
   * @returns {Promise<void>}
   */
  async configure(config) {}

  /**
   * Answers `configure` with `check: true` (sent by `gatekeeper check`): read and check the
   * config and every file it names, act on nothing (no listening, connecting or pushing); throw
   * (e.g. `RpcError.invalidParams(...)`) with what is wrong, with file, line and key where there
   * are some. `stop` follows, never `start`.
   *
   * Default: runs `configure`, which must act on nothing anyway.
   *
   * @param {Record<string, unknown>} config
   * @returns {Promise<void>}
   */
  async check(config) {
    await this.configure(config);
  }

  /**
   * Tells the proxy (`config_status`) that the plugin rejected a change of its config it made on
   * its own (e.g. a watched file that does not parse) and keeps its last good one.
   *
   * @param {string} message what is wrong, with file, line and key where there are some
   * @returns {Promise<void>}
   */
  async reportConfigError(message) {
    await this.#reporter().reportConfigError(message);
  }

  /**
   * Tells the proxy that the current config is accepted (clears a rejection).
   *
   * @returns {Promise<void>}
   */
  async reportConfigOk() {
    await this.#reporter().reportConfigOk();
  }

  #reporter() {
    const reporter = this[REPORTER];
    if (reporter === undefined || reporter === null) {
      throw new Error('no connection: the plugin is not being served by gatekeeper-plugin-sdk');
    }
    return reporter;
  }

  /**
   * Runs once, after `configure`: begin work. When it resolves the plugin is ready and its
   * hooks are called from then on. For an upstream plugin, `startUpstreams` runs right after.
   *
   * Default: does nothing.
   *
   * @returns {Promise<void>}
   */
  async start() {}

  /**
   * Runs on an interval (5 s by default) while the plugin runs. Throwing, or not answering
   * within 2 s, counts as a missed heartbeat; after 2 in a row the plugin is restarted.
   *
   * Default: answers that all is well.
   *
   * @returns {Promise<void>}
   */
  async heartbeat() {}

  /**
   * Runs once, when gatekeeper stops the plugin: release resources, flush buffers (within
   * 3 s). Once it has been answered (error or not) the SDK closes the connection and
   * {@link serve} exits the process with code 0.
   *
   * Default: does nothing.
   *
   * @returns {Promise<void>}
   */
  async stop() {}

  /**
   * The hooks this plugin implements, sent in the handshake. The proxy never calls a hook that
   * is not declared, and the SDK answers one that arrives anyway with `-32601`.
   *
   * Default (in each type's class): the hooks whose methods this object overrides. Override
   * `hooks()` to declare a fixed list instead.
   *
   * @returns {string[]} wire names, e.g. `['modify_request']`
   */
  hooks() {
    return [];
  }

  /**
   * The declared hooks that want the body, sent in the handshake (`bodies`; modifiers only):
   * `modify_request` gets the request body, `modify_response` and `modify_error_response` the
   * response body, as `body_base64`, up to gatekeeper's `max_plugin_body`. Read and replace it
   * with `bodyBytes` and `setBodyBytes`.
   *
   * Default: none (bodies stream past the plugin).
   *
   * @returns {string[]} wire names, e.g. `['modify_request']`
   */
  bodies() {
    return [];
  }

  /**
   * The declared hooks gatekeeper must not send twice, sent in the handshake (`no_retry`). By
   * default a hook call in flight on a process that dies (or stalls while another instance is
   * ready) is sent once more to another process, so a hook may run twice for one request; name
   * a hook here when running it twice would do harm. Such a call fails instead, under the
   * plugin's failure policy.
   *
   * Default: none (every hook may be retried).
   *
   * @returns {string[]} wire names, e.g. `['modify_request']`
   */
  noRetry() {
    return [];
  }
}

/**
 * A plugin that feeds the proxy upstreams (services) and backends (instances) through a
 * {@link Manager}: `manager.addUpstream(upstream)`, `removeUpstream(id)`,
 * `addBackend(upstreamId, backend)`, `removeBackend(upstreamId, backendId)`.
 *
 * The proxy's `start` call runs `start()`, then `startUpstreams(manager)`, and is answered when
 * both have resolved. Push a fixed list in `startUpstreams` (a rejected manager call that you
 * let propagate fails `start` with the proxy's error code); a plugin that discovers changes over
 * time keeps using `this.manager` afterwards.
 */
export class UpstreamPlugin extends Plugin {
  static pluginType = 'upstream';

  /**
   * The manager of the current connection (`null` until {@link run} has connected).
   *
   * @returns {Manager | null}
   */
  get manager() {
    return this[MANAGER] ?? null;
  }

  /**
   * Runs during the proxy's `start` call, right after `start()`: push the initial upstreams
   * and backends. The manager's calls go to the proxy while it waits for `start` to be
   * answered. Manager methods are idempotent, so a restarted plugin simply pushes everything
   * again.
   *
   * Default: does nothing.
   *
   * @param {Manager} manager
   * @returns {Promise<void>}
   */
  async startUpstreams(manager) {}

  /**
   * Wire `upstream_metric`. Runs when the proxy flushes its buffer of backend outcomes (only
   * if declared): a batch of records `{time_ms, upstream, backend, latency_us, status?,
   * error?}`, oldest first. The proxy does not wait on it for any request.
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} metrics
   * @returns {Promise<void>}
   */
  async upstreamMetric(metrics) {}

  /** @returns {string[]} default: `upstream_metric` if `upstreamMetric` is overridden */
  hooks() {
    return overridden(this, UpstreamPlugin, UPSTREAM_HOOKS);
  }
}

/**
 * A plugin that changes requests and responses, or answers requests itself. Each modifier sees
 * what the previous one (in gatekeeper's configured order) left. A hook returns only what it
 * changes: returning nothing (or `{}`) leaves the request or response as it is.
 */
export class ModifierPlugin extends Plugin {
  static pluginType = 'modifier';

  /**
   * The parts of the request `modifyRequest` needs, sent in the handshake (`parts`): `method`,
   * `path`, `query`, `host`, `headers` (all), `header:NAME`, `client`, `context`, `upstream`.
   * gatekeeper then sends only those (with `method` and `path`; the body follows `bodies()`),
   * and the hook must answer with a patch, a response or nothing (a returned request is sent as
   * a patch; one whose body changed cannot be).
   *
   * Default: none (the whole request is sent).
   *
   * @returns {string[]} e.g. `['header:authorization']`
   */
  requestParts() {
    return [];
  }

  /**
   * Wire `modify_request`. Runs for every request after routing, before a backend is picked.
   * Return `{request}` (the complete new request: its `method`, `prefixless_path`, `query`,
   * `headers`, `context` and `upstream` are used) to replace it, or `{response}` to answer the
   * client directly (later modifiers and the backend are skipped; `modify_response` hooks still
   * run on it).
   *
   * Default: leaves the request unchanged (and is not declared unless overridden).
   *
   * @param {Request} request
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<ModifyRequestResult | void>}
   */
  async modifyRequest(request, params) {}

  /**
   * Wire `modify_response`. Runs for every response (status and headers; bodies stream past)
   * before the client gets it, including responses a modifier gave directly. Return
   * `{response}` to replace it; a `body` in it replaces the backend's body.
   *
   * Default: leaves the response unchanged (and is not declared unless overridden).
   *
   * @param {Request} request the request as forwarded
   * @param {Response} response the backend's response, without body
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<ModifyResponseResult | void>}
   */
  async modifyResponse(request, response, params) {}

  /**
   * Wire `modify_error_response`. Runs when the proxy itself answers with an error (no route,
   * no backend, backend unreachable, timeout, …). Return `{response}` to replace it.
   *
   * Default: leaves the response unchanged (and is not declared unless overridden).
   *
   * @param {Request} request
   * @param {Response} response the plain-text error response, `body` included
   * @param {ProxyError} error `{kind, message}`
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<ModifyResponseResult | void>}
   */
  async modifyErrorResponse(request, response, error, params) {}

  /** @returns {string[]} default: the modifier hooks this object overrides */
  hooks() {
    return overridden(this, ModifierPlugin, MODIFIER_HOOKS);
  }
}

/**
 * A plugin that picks the upstream of every request, in place of the built-in prefix and host
 * routing. The proxy keeps it in step with its registry: `addUpstream` for every upstream when
 * the plugin (re)starts and whenever one appears, `removeUpstream` when one goes.
 */
export class RouterPlugin extends Plugin {
  static pluginType = 'router';

  /**
   * Wire `add_upstream`. Runs when an upstream enters the proxy's registry or is replaced:
   * for every upstream when the plugin (re)starts (before any `routeRequest`), then on every
   * change. The same upstream may arrive more than once.
   *
   * Default: does nothing (and is not declared unless overridden).
   *
   * @param {Upstream} upstream
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async addUpstream(upstream, params) {}

  /**
   * Wire `remove_upstream`. Runs when an upstream (with its backends) leaves the registry.
   *
   * Default: does nothing (and is not declared unless overridden).
   *
   * @param {string} id
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async removeUpstream(id, params) {}

  /**
   * Wire `route_request`. Runs for every request, first thing after it is parsed (the request
   * has no `upstream` or `prefix` yet; `prefixless_path` equals `path`). Return
   * `{upstream: id}`, optionally with `prefixless_path` (the path the backend gets) and a
   * changed `request`. No upstream (`null`, absent, or returning nothing): 404.
   *
   * Default: no route (and is not declared unless overridden).
   *
   * @param {Request} request
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<RouteRequestResult | void>}
   */
  async routeRequest(request, params) {}

  /** @returns {string[]} default: the router hooks this object overrides */
  hooks() {
    return overridden(this, RouterPlugin, ROUTER_HOOKS);
  }
}

/**
 * A plugin that picks the backend of every request, in place of the built-in balancers. The
 * proxy keeps it in step with its registry (`addBackend`, `removeBackend`), may report backend
 * outcomes in batches (`upstreamMetric`), and asks `getBackend` for every forwarded request.
 */
export class LoadBalancerPlugin extends Plugin {
  static pluginType = 'loadbalancer';

  /**
   * Wire `add_backend`. Runs when a backend enters the registry or is replaced: for every
   * backend when the plugin (re)starts (before any `getBackend`), then on every change. The
   * same backend may arrive more than once.
   *
   * Default: does nothing (and is not declared unless overridden).
   *
   * @param {string} upstreamId
   * @param {Backend} backend
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async addBackend(upstreamId, backend, params) {}

  /**
   * Wire `remove_backend`. Runs when a backend leaves the registry (removing an upstream
   * removes each of its backends first).
   *
   * Default: does nothing (and is not declared unless overridden).
   *
   * @param {string} upstreamId
   * @param {string} backendId
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async removeBackend(upstreamId, backendId, params) {}

  /**
   * Wire `upstream_metric`. Runs when the proxy flushes its buffer of backend outcomes: a
   * batch of `{time_ms, upstream, backend, latency_us, status?, error?}`, oldest first, to
   * balance on latency or errors. The proxy does not wait on it for any request.
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} metrics
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async upstreamMetric(metrics, params) {}

  /**
   * Wire `get_backend`. Runs for every request to be forwarded, after the modifiers'
   * `modify_request`: return `{backend_id}`, one of the upstream's backends. No backend
   * (`null`, absent, or returning nothing) makes the proxy answer 503; an id the upstream does
   * not have counts as a failure.
   *
   * Default: no backend (and is not declared unless overridden).
   *
   * @param {string} upstreamId
   * @param {Request} request
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<GetBackendResult | void>}
   */
  async getBackend(upstreamId, request, params) {}

  /** @returns {string[]} default: the load balancer hooks this object overrides */
  hooks() {
    return overridden(this, LoadBalancerPlugin, LOADBALANCER_HOOKS);
  }
}

/**
 * A plugin that receives what happens in gatekeeper, in batches (sent when 100 records are
 * waiting, every second, and once more at shutdown). The request path never waits for it.
 * Record fields are in docs/protocol.md ("Metric plugins").
 */
export class MetricPlugin extends Plugin {
  static pluginType = 'metric';

  /**
   * Wire `event_metric`: a batch of `{time_ms, name, attributes}` (`app_started`,
   * `request_failed`, `plugin_restarted`, …).
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} events
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async eventMetric(events, params) {}

  /**
   * Wire `profiling_metric`: a batch of `{time_ms, name, duration_us, attributes}`.
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} profiles
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async profilingMetric(profiles, params) {}

  /**
   * Wire `plugin_metric`: a batch of `{time_ms, plugin, method, latency_us, error?}`, one per
   * plugin call the proxy made.
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} metrics
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async pluginMetric(metrics, params) {}

  /**
   * Wire `request_metric`: a batch of request records (listener, method, host, path, status,
   * upstream, backend, bytes, `phases` timings, `error?`), each sent once the response body
   * has been sent.
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} metrics
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async requestMetric(metrics, params) {}

  /**
   * Wire `upstream_metric`: a batch of `{time_ms, upstream, backend, latency_us, status?,
   * error?}`, one per request to a backend.
   *
   * Default: ignores the batch (and is not declared unless overridden).
   *
   * @param {MetricRecord[]} metrics
   * @param {Record<string, unknown>} [params] the call's whole params
   * @returns {Promise<void>}
   */
  async upstreamMetric(metrics, params) {}

  /** @returns {string[]} default: the metric hooks this object overrides */
  hooks() {
    return overridden(this, MetricPlugin, METRIC_HOOKS);
  }
}

/**
 * The mark of the SDK's own classes (a static property holding the class itself), shared by every
 * copy of the SDK in one process, so a plugin written with one copy (e.g. by relative path) is
 * served by another (e.g. the installed package's test host).
 */
const CLASS_MARK = Symbol.for('gatekeeper-plugin-sdk.class');
for (const cls of [Plugin, UpstreamPlugin, ModifierPlugin, RouterPlugin, LoadBalancerPlugin, MetricPlugin]) {
  Object.defineProperty(cls, CLASS_MARK, { value: cls });
}

/** The class of each plugin type, by type name. */
export const PLUGIN_CLASSES = Object.freeze({
  upstream: UpstreamPlugin,
  modifier: ModifierPlugin,
  router: RouterPlugin,
  loadbalancer: LoadBalancerPlugin,
  metric: MetricPlugin,
});

/**
 * The type `plugin` serves: the `pluginType` of its class.
 *
 * @param {unknown} plugin
 * @returns {keyof typeof HOOKS | undefined}
 */
export function pluginTypeOf(plugin) {
  if (plugin === null || typeof plugin !== 'object') return undefined;
  const ctor = /** @type {any} */ (plugin).constructor;
  // A plugin class of another copy of the SDK has the same mark on its base class `Plugin`.
  const isPlugin = plugin instanceof Plugin || (typeof ctor === 'function' && ctor[CLASS_MARK] !== undefined);
  if (!isPlugin) return undefined;
  const type = ctor.pluginType;
  return Object.hasOwn(HOOKS, type) ? type : undefined;
}
