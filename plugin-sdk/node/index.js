/**
 * gatekeeper-plugin-sdk: write gatekeeper plugins in JavaScript.
 *
 * A gatekeeper plugin is a separate process: gatekeeper starts it with a few `GATEKEEPER_*`
 * environment variables, the plugin connects to a Unix socket, and the two exchange JSON-RPC
 * 2.0 calls, one JSON object per line (docs/protocol.md). This package hides all of that:
 * extend the class of your plugin type, override the hooks you need, call {@link serve}.
 *
 * | plugin type | class | the proxy calls (hooks) | the plugin calls |
 * |---|---|---|---|
 * | all | `Plugin` | `configure` (`check` when gatekeeper only checks the config), `start`, `heartbeat`, `stop` | `reportConfigError`, `reportConfigOk` (`config_status`) |
 * | upstream | `UpstreamPlugin` | (optional) `upstreamMetric` | `Manager`: `addUpstream`, `removeUpstream`, `addBackend`, `removeBackend` |
 * | modifier | `ModifierPlugin` | `modifyRequest`, `modifyResponse`, `modifyErrorResponse` | |
 * | router | `RouterPlugin` | `addUpstream`, `removeUpstream`, `routeRequest` | |
 * | loadbalancer | `LoadBalancerPlugin` | `addBackend`, `removeBackend`, `upstreamMetric`, `getBackend` | |
 * | metric | `MetricPlugin` | `eventMetric`, `profilingMetric`, `pluginMetric`, `requestMetric`, `upstreamMetric` | |
 *
 * @module gatekeeper-plugin-sdk
 */

export * as batch from './src/batch.js';
export { CONFIG_TYPES, configValue } from './src/config.js';
export { codes, EnvError, InvalidResult, isRpcError, RpcError } from './src/errors.js';
export { createLogger, silentLogger } from './src/log.js';
export { ConfigReporter, DEFAULT_MANAGER_TIMEOUT_MS, Manager } from './src/manager.js';
export { DEFAULT_MAX_LINE_BYTES } from './src/peer.js';
export {
  HOOKS,
  LOADBALANCER_HOOKS,
  LoadBalancerPlugin,
  METHOD_NAMES,
  METRIC_HOOKS,
  MetricPlugin,
  MODIFIER_HOOKS,
  ModifierPlugin,
  Plugin,
  PLUGIN_CLASSES,
  pluginTypeOf,
  ROUTER_HOOKS,
  RouterPlugin,
  UPSTREAM_HOOKS,
  UpstreamPlugin,
} from './src/plugins.js';
export { patch } from './src/patch.js';
export { bodyHooksOf, hooksOf, methodsOfKind, PROTOCOL, validate } from './src/protocol.js';
export { cookies, queryParams } from './src/request.js';
export { connect, PROTOCOL_VERSION, readEnv, run, serve } from './src/serve.js';
export { bodyBytes, cached, header, removeHeader, setBodyBytes, setHeader } from './src/types.js';
