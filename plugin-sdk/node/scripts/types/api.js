/**
 * The SDK's public API as TypeScript declarations (`types/index.d.ts`, `types/testing.d.ts`),
 * for scripts/generate-types.js: each plugin class's hook methods, their arguments and results
 * come from the protocol's method table; the rest is written here, next to the API it
 * declares (index.js, testing.js).
 *
 * @module
 */

import { codes } from '../../src/errors.js';
import { HOOK_PARAMS, HOOKS, METHOD_NAMES } from '../../src/plugins.js';
import { camel, doc, HEADER, tsType } from './schema.js';

/** The `$defs` whose values hooks receive with the SDK's defaults filled in, and the SDK's name for them. */
const FILLED = { HttpRequest: 'Request', HttpResponse: 'Response', Upstream: 'Upstream', Backend: 'Backend', ProxyError: 'ProxyError' };

/** Fields the SDK fills in for hooks although the schema gives them no default. */
const ALSO_FILLED = { Upstream: ['extra'], Backend: ['extra'] };

/** The SDK's name for the type of `$defs` entry `name` as hooks receive it, else the protocol's. */
const sdkRef = (name) => FILLED[name] ?? `P.${name}`;

/** The arguments of hook `hook`'s JS method, from its params schema. */
function hookArguments(protocol, hook, ref) {
  const method = protocol.methods.find((m) => m.name === hook);
  const params = protocol.$defs[method.params.$ref.replace('#/$defs/', '')];
  return HOOK_PARAMS[hook].map((name) => `${camel(name)}: ${tsType(params.properties[name], ref)}`);
}

/** A hook's result type, as a plugin may return it. */
function hookResult(protocol, hook) {
  const method = protocol.methods.find((m) => m.name === hook);
  const result = method.result.$ref.replace('#/$defs/', '');
  return result === 'Empty' ? 'Promise<void>' : `Promise<P.${result} | void>`;
}

/** The hook methods a plugin class declares for `type`. */
function hookMethods(protocol, type) {
  return HOOKS[type]
    .map((hook) => {
      const method = protocol.methods.find((m) => m.name === hook);
      const params = method.params.$ref.replace('#/$defs/', '');
      const args = [...hookArguments(protocol, hook, sdkRef), `params?: P.${params}`].join(', ');
      return `${doc(`Wire \`${hook}\`: ${method.description}`, 1)}  ${METHOD_NAMES[hook]}(${args}): ${hookResult(protocol, hook)};\n`;
    })
    .join('');
}

/** `Request`, `Response`, …: the protocol's types with the fields the SDK fills in made required. */
function filledTypes(protocol) {
  return Object.entries(FILLED)
    .map(([def, alias]) => {
      const schema = protocol.$defs[def];
      const filled = Object.entries(schema.properties ?? {})
        .filter(([name, member]) => member.default !== undefined || (ALSO_FILLED[def] ?? []).includes(name))
        .map(([name]) => JSON.stringify(name));
      const type = filled.length === 0 ? `P.${def}` : `P.${def} & Required<Pick<P.${def}, ${filled.join(' | ')}>>`;
      return `${doc(`${schema.description ?? def} As hooks receive it: the fields with defaults are filled in.`, 0)}export type ${alias} = ${type};\n`;
    })
    .join('\n');
}

/** `types/index.d.ts`. */
export function indexDeclarations(protocol) {
  const hooksConst = Object.entries(HOOKS)
    .map(([type, hooks]) => `  readonly ${type}: readonly [${hooks.map((h) => JSON.stringify(h)).join(', ')}];`)
    .join('\n');
  const methodNames = Object.entries(METHOD_NAMES)
    .map(([wire, js]) => `  readonly ${wire}: ${JSON.stringify(js)};`)
    .join('\n');
  const codeLines = Object.entries(codes)
    .map(([name, value]) => `  readonly ${name}: ${value};`)
    .join('\n');
  const typeConst = (type) => `readonly [${HOOKS[type].map((h) => JSON.stringify(h)).join(', ')}]`;
  return `${HEADER}// The public API of gatekeeper-plugin-sdk (index.js).

import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

import type * as P from './protocol.js';

export type * as protocol from './protocol.js';

/** Headers: \`[name, value]\` pairs, in order, duplicates kept; names from gatekeeper are lower-case. */
export type Headers = Array<[string, string]>;

${filledTypes(protocol)}
/** A plugin type, as \`GATEKEEPER_PLUGIN_TYPE\` names it. */
export type PluginType = P.PluginType;

// ---- errors ----

/** The protocol's error codes (docs/protocol.md, "Errors"). */
export declare const codes: {
${codeLines}
};

/** A JSON-RPC error: throw one from a hook to answer with its code; manager calls reject with one. */
export declare class RpcError extends Error {
  constructor(code: number, message: string, data?: unknown);
  code: number;
  data?: unknown;
  /** An \`-32602\` invalid params error. */
  static invalidParams(message: string): RpcError;
  /** An \`-32603\` internal error. */
  static internal(message: string): RpcError;
  /** An \`-32020\` unavailable error. */
  static unavailable(message: string): RpcError;
  toJSON(): { code: number; message: string; data?: unknown };
}

/** Whether \`error\` is an {@link RpcError} (also one from another copy of this package). */
export declare function isRpcError(error: unknown): error is RpcError;

/** Why {@link serve} could not start: not run by gatekeeper, a bad variable, the wrong type. */
export declare class EnvError extends Error {
  constructor(message: string, variable?: string);
  variable?: string;
}

/** A hook returned something the protocol cannot carry; answered \`-32603\` instead of sent. */
export declare class InvalidResult extends TypeError {
  constructor(message: string, method: string);
  method: string;
}

// ---- logging ----

/** Where the SDK's log lines go. */
export interface Logger {
  debug(message: string, error?: unknown): void;
  info(message: string, error?: unknown): void;
  warn(message: string, error?: unknown): void;
  error(message: string, error?: unknown): void;
}

/** A logger writing \`LEVEL gatekeeper-plugin-sdk: message\` lines (default: to stderr, level from \`GATEKEEPER_SDK_LOG\`). */
export declare function createLogger(options?: { level?: 'debug' | 'info' | 'warn' | 'error' | 'off'; write?: (text: string) => void }): Logger;

/** A logger that drops everything. */
export declare const silentLogger: Logger;

// ---- the manager ----

/** How long a manager call waits for the proxy by default (ms). */
export declare const DEFAULT_MANAGER_TIMEOUT_MS: number;

/** What the manager and the config reporter send their calls through. */
export interface ProxyConnection {
  request(method: string, params: object, timeoutMs: number): Promise<unknown>;
}

/** An upstream plugin's handle on the proxy's registry of upstreams and backends. */
export declare class Manager {
  constructor(peer: ProxyConnection, timeoutMs?: number);
  /** How long each call waits for the proxy, in ms. */
  timeoutMs: number;
  /** Wire \`add_upstream\`. */
  addUpstream(upstream: P.Upstream): Promise<void>;
  /** Wire \`remove_upstream\`. */
  removeUpstream(id: string): Promise<void>;
  /** Wire \`add_backend\`. */
  addBackend(upstreamId: string, backend: P.Backend): Promise<void>;
  /** Wire \`remove_backend\`. */
  removeBackend(upstreamId: string, backendId: string): Promise<void>;
  /** Wire \`apply_batch\`: many changes as one, all or none. */
  applyBatch(changes: P.BatchChange[], options?: { replace?: boolean }): Promise<P.ApplyBatchResult>;
}

/** Reports the plugin's config state to the proxy (\`config_status\`). */
export declare class ConfigReporter {
  constructor(peer: ProxyConnection, timeoutMs?: number);
  timeoutMs: number;
  reportConfigError(message: string): Promise<void>;
  reportConfigOk(): Promise<void>;
}

/** Builders of {@link Manager.applyBatch}'s changes, and the refused changes of a refused batch. */
export declare namespace batch {
  function addUpstream(upstream: P.Upstream): P.BatchChange;
  function removeUpstream(id: string): P.BatchChange;
  function addBackend(upstreamId: string, backend: P.Backend): P.BatchChange;
  function removeBackend(upstreamId: string, backendId: string): P.BatchChange;
  function refused(error: unknown): P.RefusedChange[];
  type BatchChange = P.BatchChange;
  type ApplyBatchResult = P.ApplyBatchResult;
  type RefusedChange = P.RefusedChange;
}

// ---- the plugin classes ----

/** The lifecycle every plugin shares; extend the class of your plugin type. */
export declare class Plugin {
  /** The plugin type this class serves. */
  static pluginType: PluginType | undefined;
  /** Wire \`configure\`: the plugin's config map; throw to refuse it. */
  configure(config: Record<string, unknown>): Promise<void>;
  /** Wire \`configure\` with \`check: true\` (\`gatekeeper check\`): check, act on nothing. */
  check(config: Record<string, unknown>): Promise<void>;
  /** Wire \`start\`. */
  start(): Promise<void>;
  /** Wire \`heartbeat\`. */
  heartbeat(): Promise<void>;
  /** Wire \`stop\`. */
  stop(): Promise<void>;
  /** The hooks declared in the handshake (default: the overridden hook methods). */
  hooks(): string[];
  /** The declared hooks that want bodies. */
  bodies(): string[];
  /** The declared hooks gatekeeper must not send twice. */
  noRetry(): string[];
  /** Tells the proxy the plugin rejected a config change it made on its own (\`config_status\`). */
  reportConfigError(message: string): Promise<void>;
  /** Tells the proxy the current config is accepted. */
  reportConfigOk(): Promise<void>;
}

/** A plugin that feeds the proxy upstreams and backends through a {@link Manager}. */
export declare class UpstreamPlugin extends Plugin {
  static pluginType: 'upstream';
  /** The manager of the current connection (\`null\` until served). */
  get manager(): Manager | null;
  /** Runs during \`start\`, after \`start()\`: push the initial upstreams and backends. */
  startUpstreams(manager: Manager): Promise<void>;
${hookMethods(protocol, 'upstream')}}

/** A plugin that changes requests and responses, or answers requests itself. */
export declare class ModifierPlugin extends Plugin {
  static pluginType: 'modifier';
  /** The request parts \`modifyRequest\` needs (handshake \`parts\`), e.g. \`['header:authorization']\`. */
  requestParts(): string[];
${hookMethods(protocol, 'modifier')}}

/** A plugin that picks the upstream of each request. */
export declare class RouterPlugin extends Plugin {
  static pluginType: 'router';
${hookMethods(protocol, 'router')}}

/** A plugin that picks the backend of each request. */
export declare class LoadBalancerPlugin extends Plugin {
  static pluginType: 'loadbalancer';
${hookMethods(protocol, 'loadbalancer')}}

/** A plugin that receives what happens in gatekeeper, in batches. */
export declare class MetricPlugin extends Plugin {
  static pluginType: 'metric';
${hookMethods(protocol, 'metric')}}

/** The hooks each plugin type may declare. */
export declare const HOOKS: {
${hooksConst}
};
export declare const UPSTREAM_HOOKS: ${typeConst('upstream')};
export declare const MODIFIER_HOOKS: ${typeConst('modifier')};
export declare const ROUTER_HOOKS: ${typeConst('router')};
export declare const LOADBALANCER_HOOKS: ${typeConst('loadbalancer')};
export declare const METRIC_HOOKS: ${typeConst('metric')};

/** Wire hook name → JS method name. */
export declare const METHOD_NAMES: {
${methodNames}
};

/** The class of each plugin type. */
export declare const PLUGIN_CLASSES: {
  readonly upstream: typeof UpstreamPlugin;
  readonly modifier: typeof ModifierPlugin;
  readonly router: typeof RouterPlugin;
  readonly loadbalancer: typeof LoadBalancerPlugin;
  readonly metric: typeof MetricPlugin;
};

/** The type \`plugin\` serves, or \`undefined\` when it is not an instance of a plugin class. */
export declare function pluginTypeOf(plugin: unknown): PluginType | undefined;

// ---- the protocol as data ----

/** protocol.json. */
export declare const PROTOCOL: {
  readonly protocol_version: number;
  readonly plugin_types: readonly PluginType[];
  readonly methods: ReadonlyArray<{
    name: P.MethodName;
    kind: 'handshake' | 'lifecycle' | 'hook' | 'manager' | 'status';
    direction: 'proxy_to_plugin' | 'plugin_to_proxy' | 'both';
    description: string;
    declared_by: PluginType[];
    called_by: PluginType[];
    received_by: PluginType[];
    bodies: boolean;
    params: object;
    result: object;
  }>;
  readonly $defs: Readonly<Record<string, object>>;
};

/** The hooks a plugin type may declare. */
export declare function hooksOf(pluginType: PluginType): readonly string[];
/** The hooks of a plugin type that may ask for bodies. */
export declare function bodyHooksOf(pluginType: PluginType): readonly string[];
/** The methods of one kind. */
export declare function methodsOfKind(kind: 'handshake' | 'lifecycle' | 'hook' | 'manager' | 'status'): readonly string[];
/** The first way \`value\` does not match \`schema\` (a schema of protocol.json), or \`undefined\`. */
export declare function validate(schema: object, value: unknown, path?: string, root?: object): string | undefined;

// ---- serving ----

/** The protocol version this SDK speaks. */
export declare const PROTOCOL_VERSION: number;
/** The protocol's default line limit: 16 MiB. */
export declare const DEFAULT_MAX_LINE_BYTES: number;

/** What gatekeeper tells a plugin through its environment. */
export interface PluginEnv {
  socketPath: string;
  token: string;
  name: string;
  pluginType: PluginType;
  protocolVersion: number;
  maxLineBytes: number;
  instance: number;
}

/** Reads the \`GATEKEEPER_*\` variables; throws {@link EnvError} when one is missing or unusable. */
export declare function readEnv(environ?: Record<string, string | undefined>): PluginEnv;

/** Serves \`plugin\` over an open connection until \`stop\` or the connection closes. */
export declare function run(plugin: Plugin, socket: Duplex, env?: Partial<PluginEnv>, options?: { logger?: Logger; managerTimeoutMs?: number }): Promise<void>;

/** Connects to a Unix socket. */
export declare function connect(path: string): Promise<Socket>;

/**
 * Serves a plugin for the life of the process, then exits (0, or 2 when not run by gatekeeper,
 * 1 when the connection failed). Resolves to \`null\` without serving when the calling module is
 * imported (e.g. by a test) and \`GATEKEEPER_SOCKET\` is not set.
 */
export declare function serve(plugin: Plugin, options?: { exit?: boolean; env?: Record<string, string | undefined>; logger?: Logger }): Promise<number | null>;

// ---- helpers ----

/** A request's or response's body as bytes (\`body\` as UTF-8, else \`body_base64\` decoded). */
export declare function bodyBytes(message: { body?: string | null; body_base64?: string | null }): Buffer | undefined;
/** Replaces the body in place (sets \`body_base64\`, deletes \`body\`). */
export declare function setBodyBytes<T extends { body?: string | null; body_base64?: string | null }>(message: T, data: Uint8Array | string): T;
/** The first value of a header, by case-insensitive name. */
export declare function header(headers: Headers | undefined | null, name: string): string | undefined;
/** Sets a header in place (removes earlier values, appends \`[lower-case name, value]\`). */
export declare function setHeader(headers: Headers, name: string, value: string | number): Headers;
/** Removes every value of a header in place. */
export declare function removeHeader(headers: Headers, name: string): Headers;
/** A \`modifyRequest\` result with a cache instruction. */
export declare function cached(result: P.ModifyRequestResult | undefined | null, ttlMs: number, key: string[]): P.ModifyRequestResult;
/** A result that changes only what it names. */
export declare function patch<T extends P.RequestPatch | P.ResponsePatch>(changes: T): { patch: T };

/** A request's cookies: name → value (the first of a repeated name). */
export declare function cookies(source: P.HttpRequest | Headers): Record<string, string>;
/** A request's query parameters: name → every value, in order. */
export declare function queryParams(source: P.HttpRequest | string | null | undefined): Record<string, string[]>;

/** The types {@link configValue} reads. */
export type ConfigType = 'int' | 'float' | 'bool' | 'string' | 'list' | 'duration_ms';
/** What {@link configValue} returns for each type. */
export interface ConfigValues {
  int: number;
  float: number;
  bool: boolean;
  string: string;
  list: string[];
  duration_ms: number;
}
export declare const CONFIG_TYPES: readonly ConfigType[];
/** One value of a config map read as \`type\` (flags arrive as strings, TOML as numbers); an {@link RpcError} \`-32602\` naming the key otherwise. */
export declare function configValue<T extends ConfigType>(config: Record<string, unknown>, key: string, type: T): ConfigValues[T];
export declare function configValue<T extends ConfigType, D>(config: Record<string, unknown>, key: string, type: T, defaultValue: D): ConfigValues[T] | D;
`;
}

/** `types/testing.d.ts`. */
export function testingDeclarations(protocol) {
  const seen = new Set();
  let methods = '';
  for (const hooks of Object.values(HOOKS)) {
    for (const hook of hooks) {
      if (seen.has(hook)) continue;
      seen.add(hook);
      const method = protocol.methods.find((m) => m.name === hook);
      const result = method.result.$ref.replace('#/$defs/', '');
      const args = hookArguments(protocol, hook, (name) => `P.${name}`).join(', ');
      methods += `${doc(`Calls \`${hook}\` (only if the plugin declared it).`, 1)}  ${METHOD_NAMES[hook]}(${args}): Promise<P.${result}>;\n`;
    }
  }
  return `${HEADER}// The test host (gatekeeper-plugin-sdk/testing, testing.js).

import type { Duplex } from 'node:stream';

import type { Logger, Plugin, PluginType, Request, Response } from './index.js';
import type * as P from './protocol.js';

/** How long each step may take by default (ms). */
export declare const DEFAULT_STEP_TIMEOUT_MS: number;

/** Options of {@link makeRequest}. */
export interface MakeRequestOptions {
  method?: string;
  /** May carry a query (\`/a?x=1\`). */
  path?: string;
  query?: string;
  host?: string;
  headers?: Record<string, string | number> | Array<[string, string | number]>;
  cookies?: Record<string, string>;
  listener?: string;
  remote_addr?: string;
  remoteAddr?: string;
  prefix?: string;
  prefixless_path?: string;
  prefixlessPath?: string;
  upstream?: string;
  context?: Record<string, unknown>;
  body?: string | Uint8Array;
}

/** A request as gatekeeper sends it to a hook. */
export declare function makeRequest(options?: MakeRequestOptions): Request;

/** A response as gatekeeper sends it to \`modifyResponse\` or \`modifyErrorResponse\`. */
export declare function makeResponse(options?: {
  status?: number;
  headers?: Record<string, string | number> | Array<[string, string | number]>;
  body?: string | Uint8Array;
}): Response;

/** The plugin broke the protocol (a bad handshake or result, an undeclared hook called). */
export declare class ProtocolViolation extends Error {
  constructor(message: string, method?: string);
  method?: string;
}

/** A call the plugin made on the proxy, with the host's answer. */
export interface RecordedCall {
  method: string;
  params: Record<string, unknown>;
  result?: unknown;
  error?: { code: number; message: string };
}

/** Options of {@link startTestHost}. */
export interface TestHostOptions {
  /** The type gatekeeper runs the plugin as (default: the plugin's). */
  type?: PluginType;
  /** The config map (default \`{}\`). */
  config?: Record<string, unknown>;
  /** The plugin's name (default: the type). */
  name?: string;
  /** Answers the plugin's calls on the proxy: a result, nothing for the usual one, or throw an RpcError. */
  answer?: (method: string, params: Record<string, unknown>) => unknown;
  /** How long each step may take (default 5 s). */
  timeoutMs?: number;
  /** Where the SDK's log lines go besides \`host.log\` (default: stderr). */
  logger?: Logger;
}

/** A plugin served in memory after its handshake, \`configure\` and \`start\`. */
export declare class TestHost {
  readonly type: PluginType;
  /** The handshake's params. */
  readonly handshake: P.HandshakeParams;
  /** The declared hooks gatekeeper accepts. */
  readonly hooks: string[];
  /** The manager calls the plugin made, in order. */
  readonly managerCalls: RecordedCall[];
  /** The \`config_status\` reports: each \`error\` (\`null\`: OK). */
  readonly configStatus: Array<string | null>;
  /** The SDK's log lines about this plugin. */
  readonly log: Array<{ level: 'debug' | 'info' | 'warn' | 'error'; message: string }>;
  /** What gatekeeper would warn about in its own log. */
  readonly warnings: string[];
  /** Calls \`method\` as gatekeeper would, checking params and result against the schema. */
  call<M extends P.MethodName>(method: M, params?: P.Methods[M]['params']): Promise<P.Methods[M]['result']>;
${methods}  /** Sends \`heartbeat\`. */
  heartbeat(): Promise<void>;
  /** Sends \`stop\` and waits for the plugin to close the connection. */
  stop(): Promise<void>;
}

/** Starts \`plugin\` in memory as gatekeeper would (handshake, \`configure\`, \`start\`). */
export declare function startTestHost(plugin: Plugin, options?: TestHostOptions): Promise<TestHost>;

/** Two connected in-memory duplex streams. */
export declare function duplexPair(): [Duplex, Duplex];
`;
}
