/**
 * Patch results: what a modifier hook sends instead of a whole request or response.
 *
 * The SDK compares the request (or response) it gave a hook with the one the hook returned and
 * sends `{patch}` with only what changed, so gatekeeper re-reads only that. When the hook
 * changed something a patch cannot carry (a body, the host, the listener, the client's address,
 * the prefix, a header that is not valid HTTP, a context value set to `null`, the upstream
 * removed), the whole value is sent, as before. Plugin authors change nothing; {@link patch}
 * returns a patch explicitly.
 *
 * @module
 */

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Defaults of the request fields a returned request may leave out (as gatekeeper reads them). */
const REQUEST_DEFAULTS = {
  listener: '',
  remote_addr: '',
  host: '',
  prefix: null,
  prefixless_path: '',
  query: null,
  headers: [],
  upstream: null,
  context: {},
  body_base64: null,
};

/** Hook → [the argument the hook may return changed, its result key]. */
export const PATCHED_ARGUMENT = {
  modify_request: [0, 'request'],
  modify_response: [1, 'response'],
  modify_error_response: [1, 'response'],
};

const validValue = (value) =>
  typeof value === 'string' && ![...value].some((c) => {
    const code = c.codePointAt(0);
    return (code < 0x20 && c !== '\t') || (code >= 0x7f && code <= 0x9f);
  });

/** Deep equality of JSON values. */
function same(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  return keysA.length === keysB.length && keysA.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
}

function valuesByName(headers) {
  const byName = new Map();
  for (const [name, value] of headers) {
    const lower = String(name).toLowerCase();
    if (!byName.has(lower)) byName.set(lower, []);
    byName.get(lower).push(value);
  }
  return byName;
}

/** `set_headers` / `remove_headers` turning `sent` into `returned`, or `undefined` when a changed header is not valid HTTP. */
function headersBetween(sent, returned) {
  const before = valuesByName(sent);
  const after = valuesByName(returned);
  const changes = {};
  for (const name of new Set([...before.keys(), ...after.keys()])) {
    const old = before.get(name) ?? [];
    const now = after.get(name) ?? [];
    if (same(old, now)) continue;
    if (!TOKEN.test(name) || !now.every(validValue)) return undefined;
    if (now.length === 0) (changes.remove_headers ??= []).push(name);
    else (changes.set_headers ??= {})[name] = now.length === 1 ? now[0] : [...now];
  }
  return changes;
}

/**
 * The patch turning the request `sent` into `returned`, or `undefined` when a patch cannot say
 * it (the whole request must be sent).
 */
export function requestPatch(sent, returned) {
  const field = (request, name) => request[name] ?? REQUEST_DEFAULTS[name] ?? null;
  for (const name of ['listener', 'remote_addr', 'host', 'prefix']) {
    if (!same(field(sent, name), field(returned, name))) return undefined;
  }
  const body = returned.body_base64;
  if (body !== undefined && body !== null && body !== sent.body_base64) return undefined;
  const headers = headersBetween(field(sent, 'headers'), field(returned, 'headers'));
  if (headers === undefined) return undefined;
  const patch = { ...headers };
  for (const name of ['method', 'path', 'prefixless_path', 'query']) {
    if (!same(field(sent, name), field(returned, name))) patch[name] = field(returned, name);
  }
  if (!same(field(sent, 'upstream'), field(returned, 'upstream'))) {
    if (field(returned, 'upstream') === null) return undefined;
    patch.upstream = field(returned, 'upstream');
  }
  const oldContext = field(sent, 'context');
  const newContext = field(returned, 'context');
  const context = {};
  for (const [key, value] of Object.entries(newContext)) {
    if (!Object.hasOwn(oldContext, key) || !same(oldContext[key], value)) {
      if (value === null || value === undefined) return undefined;
      context[key] = value;
    }
  }
  for (const key of Object.keys(oldContext)) {
    if (!Object.hasOwn(newContext, key)) context[key] = null;
  }
  if (Object.keys(context).length > 0) patch.context = context;
  return patch;
}

/**
 * The patch of status and headers turning the response `sent` into `returned`, or `undefined`
 * when its body changed (the whole response must be sent).
 */
export function responsePatch(sent, returned) {
  for (const name of ['body', 'body_base64']) {
    const value = returned[name];
    if (value !== undefined && value !== null && value !== sent[name]) return undefined;
  }
  const headers = headersBetween(sent.headers ?? [], returned.headers ?? []);
  if (headers === undefined) return undefined;
  const patch = { ...headers };
  if (returned.status !== sent.status) {
    if (!Number.isInteger(returned.status) || returned.status < 100 || returned.status > 999) return undefined;
    patch.status = returned.status;
  }
  return patch;
}

/**
 * `result` with its whole `kind` (`'request'` or `'response'`) replaced by a patch of what
 * changed from `sent`, when a patch can say it; else `result` itself.
 */
export function asPatch(kind, sent, result) {
  const returned = result[kind];
  if (returned === null || typeof returned !== 'object' || Object.hasOwn(result, 'patch')) return result;
  const changes = kind === 'request' ? requestPatch(sent, returned) : responsePatch(sent, returned);
  if (changes === undefined) return result;
  const out = { ...result };
  delete out[kind];
  if (Object.keys(changes).length > 0) out.patch = changes;
  return out;
}

/**
 * A result that changes only what it names (`modifyRequest`: `set_headers`, `append_headers`,
 * `remove_headers`, `method`, `path`, `query` (`null` removes it), `prefixless_path`,
 * `upstream`, `context` (a `null` value removes the key); `modifyResponse`: `status` and the
 * three header keys): `patch({set_headers: {'x-user': 'alice'}})`.
 *
 * @param {object} changes
 * @returns {{patch: object}}
 */
export function patch(changes) {
  return { patch: { ...changes } };
}
