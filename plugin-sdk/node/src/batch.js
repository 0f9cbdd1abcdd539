/**
 * Builders for {@link Manager#applyBatch}'s changes, and the refused changes of a refused batch
 * (docs/protocol.md, `apply_batch`). Each change is an object with one key, a manager method's
 * name, whose value is that method's params:
 *
 * ```js
 * import { batch } from 'gatekeeper-plugin-sdk';
 * await manager.applyBatch([
 *   batch.addUpstream({ id: 'api', prefixes: ['api'] }),
 *   batch.addBackend('api', { id: 'api-1', address: 'http://10.0.0.1:8080' }),
 * ], { replace: true });
 * ```
 *
 * @module
 */

/** @typedef {import('./types.js').Upstream} Upstream */
/** @typedef {import('./types.js').Backend} Backend */
/** @typedef {Record<string, object>} BatchChange one change: `{add_upstream: {...}}`, ... */
/**
 * @typedef {{upstreams_added: number, upstreams_removed: number, backends_added: number,
 *   backends_removed: number, unchanged: number}} ApplyBatchResult what an applied batch changed
 */
/** @typedef {{index: number, code: number, message: string}} RefusedChange */

/** @param {Upstream} upstream @returns {BatchChange} `{add_upstream: {upstream}}` */
export function addUpstream(upstream) {
  return { add_upstream: { upstream } };
}

/** @param {string} id @returns {BatchChange} `{remove_upstream: {id}}` */
export function removeUpstream(id) {
  return { remove_upstream: { id } };
}

/**
 * @param {string} upstreamId
 * @param {Backend} backend
 * @returns {BatchChange} `{add_backend: {upstream_id, backend}}`
 */
export function addBackend(upstreamId, backend) {
  return { add_backend: { upstream_id: upstreamId, backend } };
}

/**
 * @param {string} upstreamId
 * @param {string} backendId
 * @returns {BatchChange} `{remove_backend: {upstream_id, backend_id}}`
 */
export function removeBackend(upstreamId, backendId) {
  return { remove_backend: { upstream_id: upstreamId, backend_id: backendId } };
}

/**
 * The refused changes listed in a refused batch's error (its `data.refused`), in batch order;
 * empty when it has none (e.g. a malformed batch, `-32602`).
 *
 * @param {unknown} error an {@link RpcError} from {@link Manager#applyBatch}
 * @returns {RefusedChange[]}
 */
export function refused(error) {
  const list = /** @type {any} */ (error)?.data?.refused;
  if (!Array.isArray(list)) return [];
  return list
    .filter((item) => Number.isInteger(item?.index) && Number.isInteger(item?.code))
    .map((item) => ({ index: item.index, code: item.code, message: String(item.message) }));
}
