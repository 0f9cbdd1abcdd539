/**
 * Request and response builders for tests: {@link makeRequest} and {@link makeResponse} build
 * the objects gatekeeper sends to hooks, with the defaults every SDK's test host shares
 * (plugin-sdk/conformance/testhost.json).
 *
 * @module
 */

/** @typedef {import('../types.js').Request} Request */
/** @typedef {import('../types.js').Response} Response */
/** @typedef {import('../types.js').Headers} Headers */

/**
 * Headers given as an object (`{'X-Token': 'a'}`) or as `[name, value]` pairs (repeated names
 * kept), with names lower-cased, in order.
 *
 * @param {Record<string, string | number> | Array<[string, string | number]> | undefined} headers
 * @returns {Headers}
 */
function lowerCased(headers) {
  if (headers === undefined || headers === null) return [];
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return pairs.map((pair) => {
    if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError('headers are an object or a list of [name, value] pairs');
    return [String(pair[0]).toLowerCase(), String(pair[1])];
  });
}

/** The body as base64: a string is encoded as UTF-8. */
function base64(body) {
  return Buffer.from(body).toString('base64');
}

/** `path` without the prefix segment `prefix` (`/api/users`, `api` → `/users`), or `path`. */
function withoutPrefix(path, prefix) {
  if (typeof prefix !== 'string' || prefix === '') return path;
  const head = `/${prefix}`;
  if (path === head) return '/';
  return path.startsWith(`${head}/`) ? path.slice(head.length) : path;
}

/**
 * A request as gatekeeper sends it to a hook.
 *
 * - `path` may carry a query (`/a?x=1`): it is split into `path` and `query`;
 * - header names are lower-cased and kept in order; a `host` header comes first (from `host`,
 *   or the `Host` among `headers`, default `localhost`);
 * - `cookies` become one `cookie` header after the others;
 * - `prefix` is the matched prefix segment; `prefixless_path` is the path without it (or as given);
 * - `body` (a string or bytes) is sent base64-encoded, as to a plugin that asked for bodies.
 *
 * @param {object} [options]
 * @param {string} [options.method] default `GET`
 * @param {string} [options.path] default `/`
 * @param {string} [options.query] the query without `?` (default: from `path`)
 * @param {string} [options.host] default: the `Host` header given, else `localhost`
 * @param {Record<string, string | number> | Array<[string, string | number]>} [options.headers]
 * @param {Record<string, string>} [options.cookies]
 * @param {string} [options.listener] default `http-public`
 * @param {string} [options.remote_addr] the client's `ip:port`, default `127.0.0.1:50000`
 * @param {string} [options.remoteAddr] the same, camelCase
 * @param {string} [options.prefix]
 * @param {string} [options.prefixless_path] default: `path` without `prefix`
 * @param {string} [options.prefixlessPath] the same, camelCase
 * @param {string} [options.upstream]
 * @param {Record<string, unknown>} [options.context] default `{}`
 * @param {string | Uint8Array} [options.body]
 * @returns {Request}
 */
export function makeRequest(options = {}) {
  const target = options.path ?? '/';
  const at = target.indexOf('?');
  const path = at < 0 ? target : target.slice(0, at);
  const query = options.query ?? (at < 0 ? null : target.slice(at + 1));
  const given = lowerCased(options.headers);
  const hostHeader = given.find(([name]) => name === 'host');
  const host = options.host ?? hostHeader?.[1] ?? 'localhost';
  /** @type {Headers} */
  const headers = [['host', host], ...given.filter(([name]) => name !== 'host')];
  if (options.cookies !== undefined && options.cookies !== null) {
    const pairs = Object.entries(options.cookies).map(([name, value]) => `${name}=${value}`);
    if (pairs.length > 0) headers.push(['cookie', pairs.join('; ')]);
  }
  const prefix = options.prefix ?? null;
  /** @type {Request} */
  const request = {
    listener: options.listener ?? 'http-public',
    remote_addr: options.remote_addr ?? options.remoteAddr ?? '127.0.0.1:50000',
    method: options.method ?? 'GET',
    host,
    path,
    prefixless_path: options.prefixless_path ?? options.prefixlessPath ?? withoutPrefix(path, prefix),
    headers,
    context: structuredClone(options.context ?? {}),
  };
  if (prefix !== null) request.prefix = prefix;
  if (query !== null) request.query = query;
  if (options.upstream !== undefined && options.upstream !== null) request.upstream = options.upstream;
  if (options.body !== undefined && options.body !== null) request.body_base64 = base64(options.body);
  return request;
}

/**
 * A response as gatekeeper sends it to `modifyResponse` (a backend's, without body unless
 * given) or `modifyErrorResponse`.
 *
 * @param {object} [options]
 * @param {number} [options.status] default 200
 * @param {Record<string, string | number> | Array<[string, string | number]>} [options.headers]
 *   names lower-cased, in order
 * @param {string | Uint8Array} [options.body] a string is sent as the text `body`, bytes as
 *   `body_base64`
 * @returns {Response}
 */
export function makeResponse(options = {}) {
  /** @type {Response} */
  const response = { status: options.status ?? 200, headers: lowerCased(options.headers) };
  if (typeof options.body === 'string') response.body = options.body;
  else if (options.body !== undefined && options.body !== null) response.body_base64 = base64(options.body);
  return response;
}
