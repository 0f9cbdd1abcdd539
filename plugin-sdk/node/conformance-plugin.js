#!/usr/bin/env node
/**
 * The conformance plugin of the Node SDK (plugin-sdk/conformance/README.md): serves the plugin
 * type named by GATEKEEPER_PLUGIN_TYPE, written with the SDK.
 *
 * Config: `sdk` (the name it reports; default `node`), `file` (a path to append JSON lines to)
 * and, for the upstream role, `upstream_id` (default `conformance`), `prefix` (default: the
 * upstream id) and `backends` (comma-separated URLs); with `batch`, the upstream role pushes them
 * in one `apply_batch` (`replace` when `batch` is `replace`).
 *
 * Run: `node plugin-sdk/node/conformance-plugin.js` (from gatekeeper). Tests import
 * {@link createConformancePlugin} and serve it in memory.
 */

import { appendFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import {
  batch,
  cached,
  header,
  LoadBalancerPlugin,
  MetricPlugin,
  ModifierPlugin,
  RouterPlugin,
  RpcError,
  serve,
  setHeader,
  UpstreamPlugin,
} from './index.js';

/** The conformance settings every role reads from its config map. */
class Settings {
  sdk = 'node';
  /** @type {string | undefined} */
  file = undefined;

  /** @type {string | undefined} */
  reportConfigError = undefined;

  /**
   * Reads the shared keys; a key `invalid` fails the configure with its message.
   *
   * @param {Record<string, unknown>} config
   */
  read(config) {
    if (config.invalid !== undefined) throw RpcError.invalidParams(String(config.invalid));
    if (config.report_config_error !== undefined && config.report_config_error !== null) {
      this.reportConfigError = String(config.report_config_error);
    }
    if (config.sdk !== undefined && config.sdk !== null) this.sdk = String(config.sdk);
    if (config.file !== undefined && config.file !== null) this.file = String(config.file);
  }

  /** Appends `record` as one JSON line to `file`, if set. */
  record(record) {
    if (this.file !== undefined) appendFileSync(this.file, `${JSON.stringify(record)}\n`);
  }
}

/**
 * What every role shares around its own `configure`: `check` keeps nothing and fails with
 * `checked: <invalid>`; `start` reports `report_config_error` with `config_status`, then reports
 * the config accepted.
 *
 * @template {new (...args: any[]) => import('./index.js').Plugin} Base
 * @param {Base} Base
 */
function conforming(Base) {
  return class extends Base {
    async check(config) {
      if (config.invalid !== undefined) throw RpcError.invalidParams(`checked: ${config.invalid}`);
    }

    async start() {
      const message = this.settings.reportConfigError;
      if (message !== undefined) {
        await this.reportConfigError(message);
        await this.reportConfigOk();
      }
    }
  };
}

class ConformanceModifier extends conforming(ModifierPlugin) {
  settings = new Settings();

  async configure(config) {
    this.settings.read(config);
  }

  async modifyRequest(request) {
    const { sdk } = this.settings;
    const cacheMs = header(request.headers, 'x-conformance-cache');
    const maybeCached = (result) =>
      cacheMs === undefined ? result : cached(result, Number(cacheMs), ['header:x-conformance-cache']);
    const respond = header(request.headers, 'x-conformance-respond');
    if (respond !== undefined) {
      const status = Number(respond.trim());
      if (!Number.isInteger(status)) {
        throw RpcError.invalidParams(`x-conformance-respond must be a status code, not \`${respond}\``);
      }
      return maybeCached({ response: { status, headers: [['x-conformance-sdk', sdk]], body: `answered by ${sdk}` } });
    }
    setHeader(request.headers, 'x-conformance-sdk', sdk);
    request.context.conformance = `seen by ${sdk}`;
    return maybeCached({ request });
  }

  async modifyResponse(request, response) {
    const seen = request.context.conformance;
    setHeader(response.headers, 'x-conformance-context', seen === undefined || seen === null ? 'none' : String(seen));
    setHeader(response.headers, 'x-conformance-status', String(response.status));
    return { response };
  }

  async modifyErrorResponse(request, response, error) {
    return {
      response: {
        status: response.status,
        headers: [['content-type', 'application/json']],
        body: JSON.stringify({ error: error.kind, sdk: this.settings.sdk }),
      },
    };
  }
}

class ConformanceRouter extends conforming(RouterPlugin) {
  settings = new Settings();
  /** @type {Set<string>} */
  upstreams = new Set();

  async configure(config) {
    this.settings.read(config);
  }

  async addUpstream(upstream) {
    this.upstreams.add(upstream.id);
  }

  async removeUpstream(id) {
    this.upstreams.delete(id);
  }

  async routeRequest(request) {
    const named = header(request.headers, 'x-conformance-upstream');
    if (named !== undefined && this.upstreams.has(named)) return { upstream: named };
    const [first] = [...this.upstreams].sort();
    return { upstream: first ?? null };
  }
}

class ConformanceLoadBalancer extends conforming(LoadBalancerPlugin) {
  settings = new Settings();
  /** @type {Map<string, string[]>} backend ids per upstream, in the order they were added */
  backends = new Map();

  async configure(config) {
    this.settings.read(config);
  }

  async addBackend(upstreamId, backend) {
    const ids = this.backends.get(upstreamId) ?? [];
    if (!ids.includes(backend.id)) ids.push(backend.id);
    this.backends.set(upstreamId, ids);
  }

  async removeBackend(upstreamId, backendId) {
    const ids = (this.backends.get(upstreamId) ?? []).filter((id) => id !== backendId);
    if (ids.length === 0) this.backends.delete(upstreamId);
    else this.backends.set(upstreamId, ids);
  }

  async upstreamMetric(metrics) {
    this.settings.record({ method: 'upstream_metric', count: metrics.length });
  }

  async getBackend(upstreamId, request) {
    const ids = this.backends.get(upstreamId) ?? [];
    const named = header(request.headers, 'x-conformance-backend');
    if (named !== undefined && ids.includes(named)) return { backend_id: named };
    return { backend_id: ids[0] ?? null };
  }
}

class ConformanceUpstream extends conforming(UpstreamPlugin) {
  settings = new Settings();
  upstreamId = 'conformance';
  /** @type {string | undefined} */
  prefix = undefined;
  /** @type {string[]} */
  addresses = [];
  /** @type {string | undefined} */
  batch = undefined;

  async configure(config) {
    this.settings.read(config);
    if (config.upstream_id !== undefined && config.upstream_id !== null) this.upstreamId = String(config.upstream_id);
    if (config.prefix !== undefined && config.prefix !== null) this.prefix = String(config.prefix);
    if (config.batch !== undefined && config.batch !== null) this.batch = String(config.batch);
    if (config.backends !== undefined && config.backends !== null) {
      this.addresses = String(config.backends)
        .split(',')
        .map((address) => address.trim())
        .filter((address) => address !== '');
    }
  }

  async startUpstreams(manager) {
    const id = this.upstreamId;
    const upstream = { id, name: id, prefixes: [this.prefix ?? id] };
    const backends = this.addresses.map((address, index) => ({ id: String(index), address }));
    if (this.batch !== undefined) {
      const changes = [batch.addUpstream(upstream), ...backends.map((b) => batch.addBackend(id, b))];
      try {
        await manager.applyBatch(changes, { replace: this.batch === 'replace' });
      } catch (error) {
        const [first] = batch.refused(error);
        if (first === undefined) throw error;
        throw new RpcError(error.code, `apply_batch refused change ${first.index}: ${first.message}`);
      }
      return;
    }
    await manager.addUpstream(upstream);
    for (const backend of backends) {
      await manager.addBackend(id, backend);
    }
  }
}

class ConformanceMetric extends conforming(MetricPlugin) {
  settings = new Settings();

  async configure(config) {
    this.settings.read(config);
  }

  async eventMetric(events) {
    this.settings.record({ method: 'event_metric', count: events.length });
  }

  async profilingMetric(profiles) {
    this.settings.record({ method: 'profiling_metric', count: profiles.length });
  }

  async pluginMetric(metrics) {
    this.settings.record({ method: 'plugin_metric', count: metrics.length });
  }

  async requestMetric(metrics) {
    this.settings.record({ method: 'request_metric', count: metrics.length });
  }

  async upstreamMetric(metrics) {
    this.settings.record({ method: 'upstream_metric', count: metrics.length });
  }
}

const ROLES = {
  modifier: ConformanceModifier,
  router: ConformanceRouter,
  loadbalancer: ConformanceLoadBalancer,
  upstream: ConformanceUpstream,
  metric: ConformanceMetric,
};

/**
 * A conformance plugin for `type`.
 *
 * @param {string} type `modifier`, `router`, `loadbalancer`, `upstream` or `metric`
 * @returns {import('./index.js').Plugin}
 */
export function createConformancePlugin(type) {
  const Role = ROLES[type];
  if (Role === undefined) throw new TypeError(`no conformance plugin for type \`${type}\``);
  return new Role();
}

function isMain() {
  if (process.argv[1] === undefined) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  // A missing or unknown GATEKEEPER_PLUGIN_TYPE is reported (exit 2) by serve's own checks.
  const type = process.env.GATEKEEPER_PLUGIN_TYPE;
  serve(createConformancePlugin(Object.hasOwn(ROLES, type ?? '') ? type : 'modifier'));
}
