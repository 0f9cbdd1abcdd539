/**
 * Reading a request: its cookies ({@link cookies}) and query parameters ({@link queryParams}),
 * with the semantics every SDK shares (plugin-sdk/conformance/testhost.json).
 *
 * @module
 */

/** @typedef {import('./types.js').Headers} Headers */
/** @typedef {import('./types.js').Request} Request */

/** The headers of `source`: a request (its `headers`) or a headers array. */
function headersOf(source) {
  if (Array.isArray(source)) return source;
  if (source !== null && typeof source === 'object' && Array.isArray(source.headers)) return source.headers;
  return [];
}

/**
 * The cookies of a request: every `cookie` header (HTTP/2 sends one per cookie), split at `;`.
 * Names and values are trimmed, double quotes around a value are removed, a piece without a
 * name or without `=` is skipped, an `=` inside a value is kept, and the first of a repeated
 * name wins.
 *
 * @param {Request | Headers} source a request, or its headers
 * @returns {Record<string, string>} name → value
 */
export function cookies(source) {
  /** @type {Record<string, string>} */
  const found = Object.create(null);
  for (const pair of headersOf(source)) {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || pair[0].toLowerCase() !== 'cookie') continue;
    for (const piece of String(pair[1]).split(';')) {
      const at = piece.indexOf('=');
      if (at < 0) continue;
      const name = piece.slice(0, at).trim();
      if (name === '' || Object.hasOwn(found, name)) continue;
      let value = piece.slice(at + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      found[name] = value;
    }
  }
  return { ...found };
}

/** `+` as a space, then percent-decoding; a malformed escape is kept as written. */
function decodeComponent(text) {
  const spaced = text.replaceAll('+', ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/**
 * The query parameters of a request: its `query` split at `&`, each piece at its first `=`
 * (a name without `=` has the value `""`), names and values percent-decoded with `+` as a
 * space; empty pieces are skipped. Every value of a name is kept, in order.
 *
 * @param {Request | string | null | undefined} source a request, or its `query` (without `?`)
 * @returns {Record<string, string[]>} name → values
 */
export function queryParams(source) {
  const query = source !== null && typeof source === 'object' ? source.query : source;
  /** @type {Record<string, string[]>} */
  const params = Object.create(null);
  if (typeof query !== 'string') return { ...params };
  for (const piece of query.split('&')) {
    if (piece === '') continue;
    const at = piece.indexOf('=');
    const name = decodeComponent(at < 0 ? piece : piece.slice(0, at));
    const value = at < 0 ? '' : decodeComponent(piece.slice(at + 1));
    (params[name] ??= []).push(value);
  }
  return { ...params };
}
