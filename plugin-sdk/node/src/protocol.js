/**
 * The protocol as data: `protocol.json`, generated from the Rust protocol table (crates/rpc),
 * read here for the method lists (hooks per plugin type, body hooks, manager methods) and to
 * check what the SDK sends (hook results, manager params) against each method's JSON Schema.
 *
 * The file ships in the package (`protocol.json` next to `package.json`, a copy of
 * `plugin-sdk/protocol.json` that a cargo test keeps identical); in a repository checkout the
 * canonical file is used if the package copy is missing.
 *
 * {@link validate} handles the subset of JSON Schema (draft 2020-12) the file uses: `type`,
 * `properties`, `required`, `additionalProperties`, `items`, `prefixItems`, `minItems`,
 * `maxItems`, `minimum`, `maximum`, `const`, `enum`, `anyOf`, `oneOf` and local `$ref`s. Other
 * keywords (`format`, `default`, `description`) are ignored.
 *
 * @module
 */

import { existsSync, readFileSync } from 'node:fs';

const CANDIDATES = [new URL('../protocol.json', import.meta.url), new URL('../../protocol.json', import.meta.url)];

function load() {
  const found = CANDIDATES.find((url) => existsSync(url));
  if (found === undefined) {
    throw new Error(`gatekeeper-plugin-sdk: protocol.json not found (looked at ${CANDIDATES.map((u) => u.pathname).join(', ')})`);
  }
  return JSON.parse(readFileSync(found, 'utf8'));
}

/** The whole `protocol.json` document. */
export const PROTOCOL = Object.freeze(load());

/** Every method of the protocol by name. */
export const METHODS = Object.freeze(Object.fromEntries(PROTOCOL.methods.map((m) => [m.name, m])));

/** The five plugin types, as `GATEKEEPER_PLUGIN_TYPE` names them. */
export const PLUGIN_TYPES = Object.freeze([...PROTOCOL.plugin_types]);

/**
 * The hooks a plugin type may declare, in the protocol's order.
 *
 * @param {string} pluginType
 * @returns {readonly string[]}
 */
export function hooksOf(pluginType) {
  return Object.freeze(PROTOCOL.methods.filter((m) => m.declared_by.includes(pluginType)).map((m) => m.name));
}

/**
 * The hooks of a plugin type that may ask for bodies (`bodies` in the handshake).
 *
 * @param {string} pluginType
 * @returns {readonly string[]}
 */
export function bodyHooksOf(pluginType) {
  return Object.freeze(hooksOf(pluginType).filter((name) => METHODS[name].bodies));
}

/**
 * The methods of one kind (`handshake`, `lifecycle`, `hook`, `manager`, `status`).
 *
 * @param {string} kind
 * @returns {readonly string[]}
 */
export function methodsOfKind(kind) {
  return Object.freeze(PROTOCOL.methods.filter((m) => m.kind === kind).map((m) => m.name));
}

/**
 * Whether a method's result is always `{}` (so whatever its handler returns is ignored).
 *
 * @param {string} method
 */
export function hasEmptyResult(method) {
  return METHODS[method].result.$ref === '#/$defs/Empty';
}

/**
 * The first way `params` do not match the method's params schema, or `undefined`.
 *
 * @param {string} method
 * @param {unknown} params
 * @returns {string | undefined}
 */
export function paramsError(method, params) {
  const error = validate(METHODS[method].params, params);
  return error === undefined ? undefined : `${method} params: ${error}`;
}

/**
 * The first way `result` does not match the method's result schema, or `undefined`.
 *
 * @param {string} method
 * @param {unknown} result
 * @returns {string | undefined}
 */
export function resultError(method, result) {
  const error = validate(METHODS[method].result, result);
  return error === undefined ? undefined : `${method} result: ${error}`;
}

const ARTICLES = {
  object: 'an object',
  array: 'an array',
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'a boolean',
  null: 'null',
};

function isType(value, name) {
  switch (name) {
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    default:
      return false;
  }
}

/** `$ref`s into the protocol document, resolved once each. */
const RESOLVED = new Map();

function resolve(root, ref) {
  if (root !== PROTOCOL) return resolveIn(root, ref);
  let resolved = RESOLVED.get(ref);
  if (resolved === undefined) {
    resolved = resolveIn(root, ref);
    RESOLVED.set(ref, resolved);
  }
  return resolved;
}

function resolveIn(root, ref) {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .reduce((node, part) => node[part.replaceAll('~1', '/').replaceAll('~0', '~')], root);
}

const where = (path) => (path ? `\`${path}\`` : 'the value');
const join = (path, name) => (path ? `${path}.${name}` : name);

/** Of the errors of an `anyOf`'s branches, the one about the deepest path, skipping "must be null". */
function deepest(errors) {
  const useful = errors.filter((e) => !e.endsWith('must be null'));
  const candidates = useful.length > 0 ? useful : errors;
  const depth = (e) => (e.includes('`') ? e.split('`')[1].split('.').length : 0);
  return candidates.reduce((best, e) => (depth(e) > depth(best) ? e : best));
}

/**
 * The first way `value` does not match `schema`, or `undefined` when it matches. `$ref`s
 * resolve in `root` (default: the whole protocol document).
 *
 * @param {object} schema
 * @param {unknown} value
 * @param {string} [path]
 * @param {object} [root]
 * @returns {string | undefined}
 */
export function validate(schema, value, path = '', root = PROTOCOL) {
  const leaf = leafType(schema);
  if (leaf !== null) {
    // Only "a string" (or "a boolean"): the most common check of all (every header name and value).
    return typeof value === leaf ? undefined : `${where(path)} must be ${ARTICLES[leaf]}`;
  }
  if (schema.$ref !== undefined) {
    const error = validate(resolve(root, schema.$ref), value, path, root);
    if (error !== undefined) return error;
  }
  for (const key of ['anyOf', 'oneOf']) {
    if (schema[key] !== undefined) {
      const errors = [];
      for (const branch of schema[key]) {
        const error = validate(branch, value, path, root);
        if (error === undefined) break; // a branch matches: no need to try the others
        errors.push(error);
      }
      if (errors.length === schema[key].length) {
        if (schema[key].every((branch) => branch.const !== undefined)) {
          return `${where(path)} must be one of ${schema[key].map((branch) => JSON.stringify(branch.const)).join(', ')}`;
        }
        return deepest(errors);
      }
    }
  }
  if (schema.const !== undefined && JSON.stringify(value) !== JSON.stringify(schema.const)) {
    return `${where(path)} must be ${JSON.stringify(schema.const)}`;
  }
  if (schema.enum !== undefined && !schema.enum.some((v) => JSON.stringify(v) === JSON.stringify(value))) {
    return `${where(path)} must be one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => isType(value, t))) return `${where(path)} must be ${types.map((t) => ARTICLES[t]).join(' or ')}`;
  }
  if (isType(value, 'object')) return validateObject(schema, value, path, root);
  if (Array.isArray(value)) return validateArray(schema, value, path, root);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) return `${where(path)} must be at least ${schema.minimum}`;
    if (schema.maximum !== undefined && value > schema.maximum) return `${where(path)} must be at most ${schema.maximum}`;
  }
  return undefined;
}

const ANNOTATIONS = new Set(['description', 'title', 'format', 'default', 'examples', '$comment']);
/** Per schema object: `'string'` or `'boolean'` when it only asks for that type, else `null`. */
const LEAF_TYPES = new WeakMap();

function leafType(schema) {
  let leaf = LEAF_TYPES.get(schema);
  if (leaf === undefined) {
    const keys = Object.keys(schema).filter((key) => !ANNOTATIONS.has(key));
    const simple = keys.length === 1 && keys[0] === 'type';
    leaf = simple && (schema.type === 'string' || schema.type === 'boolean') ? schema.type : null;
    LEAF_TYPES.set(schema, leaf);
  }
  return leaf;
}

function validateObject(schema, value, path, root) {
  const properties = schema.properties ?? {};
  for (const name of schema.required ?? []) {
    if (!Object.hasOwn(value, name)) return `\`${join(path, name)}\` is missing`;
  }
  const extra = schema.additionalProperties ?? true;
  for (const [name, member] of Object.entries(value)) {
    if (member === undefined) continue; // JSON.stringify drops it
    let error;
    if (Object.hasOwn(properties, name)) error = validate(properties[name], member, join(path, name), root);
    else if (extra === false) error = `\`${join(path, name)}\` is not allowed`;
    else if (typeof extra === 'object') error = validate(extra, member, join(path, name), root);
    if (error !== undefined) return error;
  }
  return undefined;
}

function validateArray(schema, value, path, root) {
  const at = where(path);
  if (schema.minItems !== undefined && value.length < schema.minItems) return `${at} must have at least ${schema.minItems} items`;
  if (schema.maxItems !== undefined && value.length > schema.maxItems) return `${at} must have at most ${schema.maxItems} items`;
  const prefix = schema.prefixItems ?? [];
  for (const [index, item] of value.entries()) {
    const itemSchema = index < prefix.length ? prefix[index] : schema.items;
    if (typeof itemSchema === 'object') {
      const error = validate(itemSchema, item, `${path}[${index}]`, root);
      if (error !== undefined) return error;
    }
  }
  return undefined;
}
