/**
 * Checks of incoming params: what is missing or mistyped becomes an `-32602` invalid params
 * error before any hook runs. Optional fields get the defaults the Rust types give them.
 * Unknown fields are kept (and ignored), so later protocol versions can add fields.
 *
 * @module
 * @internal
 */

import { RpcError } from './errors.js';

/** @param {unknown} value @returns {value is Record<string, unknown>} */
export function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value) {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function invalid(path, expected, value) {
  return RpcError.invalidParams(`\`${path}\` must be ${expected}, but it is ${describe(value)}`);
}

/** @returns {Record<string, unknown>} */
export function object(value, path) {
  if (!isObject(value)) throw invalid(path, 'an object', value);
  return value;
}

/** @returns {string} */
export function string(value, path) {
  if (typeof value !== 'string') throw invalid(path, 'a string', value);
  return value;
}

function optionalString(parent, key, path, fallback) {
  const value = parent[key];
  if (value === undefined || value === null) {
    if (fallback !== undefined) parent[key] = fallback;
    else delete parent[key];
    return;
  }
  string(value, `${path}.${key}`);
}

function optionalObject(parent, key, path) {
  const value = parent[key];
  if (value === undefined || value === null) parent[key] = {};
  else object(value, `${path}.${key}`);
}

function stringArray(parent, key, path) {
  const value = parent[key];
  if (value === undefined || value === null) {
    parent[key] = [];
    return;
  }
  if (!Array.isArray(value)) throw invalid(`${path}.${key}`, 'an array of strings', value);
  value.forEach((item, i) => string(item, `${path}.${key}[${i}]`));
}

function headers(parent, key, path) {
  const value = parent[key];
  if (value === undefined || value === null) {
    parent[key] = [];
    return;
  }
  if (!Array.isArray(value)) throw invalid(`${path}.${key}`, 'an array of [name, value] pairs', value);
  value.forEach((pair, i) => {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      throw RpcError.invalidParams(`\`${path}.${key}[${i}]\` must be a [name, value] pair of strings`);
    }
  });
}

/** @returns {import('./types.js').Request} */
export function request(value, path = 'request') {
  const r = object(value, path);
  string(r.method, `${path}.method`);
  string(r.path, `${path}.path`);
  for (const key of ['listener', 'remote_addr', 'host', 'prefixless_path']) optionalString(r, key, path, '');
  for (const key of ['prefix', 'query', 'upstream']) optionalString(r, key, path);
  headers(r, 'headers', path);
  optionalObject(r, 'context', path);
  optionalString(r, 'body_base64', path);
  return /** @type {any} */ (r);
}

/** @returns {import('./types.js').Response} */
export function response(value, path = 'response') {
  const r = object(value, path);
  if (!Number.isInteger(r.status)) throw invalid(`${path}.status`, 'an integer', r.status);
  headers(r, 'headers', path);
  optionalString(r, 'body', path);
  optionalString(r, 'body_base64', path);
  return /** @type {any} */ (r);
}

/** @returns {import('./types.js').ProxyError} */
export function proxyError(value, path = 'error') {
  const e = object(value, path);
  string(e.kind, `${path}.kind`);
  string(e.message, `${path}.message`);
  return /** @type {any} */ (e);
}

/** @returns {import('./types.js').Upstream} */
export function upstream(value, path = 'upstream') {
  const u = object(value, path);
  string(u.id, `${path}.id`);
  optionalString(u, 'name', path, '');
  for (const key of ['protocols', 'hostnames', 'prefixes']) stringArray(u, key, path);
  if (u.timeout_ms === null) delete u.timeout_ms;
  if (u.timeout_ms !== undefined && !(Number.isInteger(u.timeout_ms) && u.timeout_ms >= 0)) {
    throw invalid(`${path}.timeout_ms`, 'a non-negative integer', u.timeout_ms);
  }
  optionalString(u, 'balancer', path);
  optionalObject(u, 'extra', path);
  return /** @type {any} */ (u);
}

/** @returns {import('./types.js').Backend} */
export function backend(value, path = 'backend') {
  const b = object(value, path);
  string(b.id, `${path}.id`);
  string(b.address, `${path}.address`);
  optionalObject(b, 'extra', path);
  return /** @type {any} */ (b);
}

/** @returns {Array<Record<string, unknown>>} */
export function records(value, path) {
  if (!Array.isArray(value)) throw invalid(path, 'an array of records', value);
  value.forEach((item, i) => object(item, `${path}[${i}]`));
  return /** @type {any} */ (value);
}
