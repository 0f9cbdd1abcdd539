/**
 * The {@link Manager}: an upstream plugin's handle on the proxy's registry of upstreams and
 * backends.
 *
 * @module
 */

import { RpcError } from './errors.js';
import { paramsError } from './protocol.js';

/** @typedef {import('./types.js').Upstream} Upstream */
/** @typedef {import('./types.js').Backend} Backend */

/** How long a manager call waits for the proxy by default (ms). */
export const DEFAULT_MANAGER_TIMEOUT_MS = 10_000;

/**
 * Adds and removes upstreams and backends in the proxy: the `add_upstream`, `remove_upstream`,
 * `add_backend` and `remove_backend` methods, called by the plugin on the proxy, one at a time
 * or many as one ({@link Manager#applyBatch}). Adding is
 * idempotent (the same content again succeeds); to change an upstream or backend, remove it and
 * add it again.
 *
 * Every method resolves once the proxy has accepted the change, and rejects with an
 * {@link RpcError} carrying the proxy's code (`-32010` unknown upstream, `-32011` conflict,
 * `-32012` invalid value, `-32013` unknown backend, `-32602` mistyped fields), or `-32603`
 * when the proxy did not answer within {@link Manager#timeoutMs} or the connection closed.
 */
export class Manager {
  /**
   * @param {{request(method: string, params: object, timeoutMs: number): Promise<unknown>}} peer
   * @param {number} [timeoutMs]
   */
  constructor(peer, timeoutMs = DEFAULT_MANAGER_TIMEOUT_MS) {
    /** @private */
    this.peer = peer;
    /** How long each call waits for the proxy, in ms; may be changed. */
    this.timeoutMs = timeoutMs;
  }

  /**
   * Checks `params` against the method's schema (`protocol.json`): a mistake throws a `-32602`
   * {@link RpcError} here, as the proxy would answer it; then calls the proxy and returns its
   * result.
   */
  async #send(method, params, timeoutMs) {
    const error = paramsError(method, params);
    if (error !== undefined) throw RpcError.invalidParams(error);
    return this.peer.request(method, params, timeoutMs);
  }

  /**
   * Adds an upstream (wire `add_upstream`).
   *
   * @param {Upstream} upstream
   * @returns {Promise<void>}
   */
  async addUpstream(upstream) {
    await this.#send('add_upstream', { upstream }, this.timeoutMs);
  }

  /**
   * Removes an upstream and all its backends (wire `remove_upstream`).
   *
   * @param {string} id
   * @returns {Promise<void>}
   */
  async removeUpstream(id) {
    await this.#send('remove_upstream', { id }, this.timeoutMs);
  }

  /**
   * Adds a backend to an upstream (wire `add_backend`).
   *
   * @param {string} upstreamId
   * @param {Backend} backend
   * @returns {Promise<void>}
   */
  async addBackend(upstreamId, backend) {
    await this.#send('add_backend', { upstream_id: upstreamId, backend }, this.timeoutMs);
  }

  /**
   * Removes a backend from an upstream (wire `remove_backend`).
   *
   * @param {string} upstreamId
   * @param {string} backendId
   * @returns {Promise<void>}
   */
  async removeBackend(upstreamId, backendId) {
    await this.#send('remove_backend', { upstream_id: upstreamId, backend_id: backendId }, this.timeoutMs);
  }

  /**
   * Applies many changes as one (wire `apply_batch`), in order, all or none: the proxy's
   * readers never see half of it. Build the changes with `batch` (`batch.addUpstream(...)`,
   * `batch.addBackend(...)`, ...).
   *
   * With `replace: true` the changes are the plugin's whole desired state (adds only): the proxy
   * removes the upstreams this plugin added that the batch does not have and the backends of its
   * upstreams that it does not list, and replaces what changed.
   *
   * A refused batch changes nothing and rejects with an {@link RpcError} carrying the first
   * refused change's code; `batch.refused(error)` lists every refused change with its index.
   *
   * @param {import('./batch.js').BatchChange[]} changes
   * @param {{replace?: boolean}} [options]
   * @returns {Promise<import('./batch.js').ApplyBatchResult>} the counts of what changed
   */
  async applyBatch(changes, { replace = false } = {}) {
    const params = { changes: [...changes], replace: Boolean(replace) };
    return /** @type {any} */ (await this.#send('apply_batch', params, this.timeoutMs));
  }
}

/**
 * Reports the plugin's config state to the proxy (`config_status`), for a plugin of any type
 * that changes its config on its own (e.g. it watches a file): the proxy logs a rejection once
 * and shows it in `gatekeeper ctl plugins` and its metrics until it is cleared. Send a report
 * when the state changes, not on every poll. Every plugin reaches it through
 * `plugin.reportConfigError(message)` and `plugin.reportConfigOk()`.
 */
export class ConfigReporter {
  /**
   * @param {{request(method: string, params: object, timeoutMs: number): Promise<unknown>}} peer
   * @param {number} [timeoutMs]
   */
  constructor(peer, timeoutMs = DEFAULT_MANAGER_TIMEOUT_MS) {
    /** @private */
    this.peer = peer;
    /** How long each call waits for the proxy, in ms; may be changed. */
    this.timeoutMs = timeoutMs;
  }

  /**
   * The new config was rejected (the plugin keeps its last good one): `message` says what is
   * wrong, with file, line and key where there are some.
   *
   * @param {string} message
   * @returns {Promise<void>}
   */
  async reportConfigError(message) {
    await this.peer.request('config_status', { error: String(message) }, this.timeoutMs);
  }

  /**
   * The current config is accepted (clears an earlier rejection).
   *
   * @returns {Promise<void>}
   */
  async reportConfigOk() {
    await this.peer.request('config_status', { error: null }, this.timeoutMs);
  }
}
