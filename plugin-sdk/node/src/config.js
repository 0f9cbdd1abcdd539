/**
 * Typed config values: {@link configValue} reads one key of a plugin's config map as an
 * integer, number, boolean, string, list or duration. Values from gatekeeper's command line
 * (`--modifier-limit 10`) arrive as strings, the same values from a TOML config file as numbers,
 * booleans or arrays; both read the same. Semantics shared by every SDK
 * (plugin-sdk/conformance/testhost.json).
 *
 * @module
 */

import { RpcError } from './errors.js';

/** The types {@link configValue} reads. */
export const CONFIG_TYPES = Object.freeze(['int', 'float', 'bool', 'string', 'list', 'duration_ms']);

const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function refuse(key, expected, value) {
  return RpcError.invalidParams(`config \`${key}\` must be ${expected}, not \`${typeof value === 'string' ? value : JSON.stringify(value)}\``);
}

const READERS = {
  int(key, value) {
    if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
    if (typeof value === 'string' && INTEGER.test(value.trim())) {
      const number = Number(value.trim());
      if (Number.isSafeInteger(number)) return number;
    }
    throw refuse(key, 'an integer', value);
  },
  float(key, value) {
    if (typeof value === 'number' && Number.isFinite(value)) return value;
    if (typeof value === 'string' && DECIMAL.test(value.trim())) return Number(value.trim());
    throw refuse(key, 'a number', value);
  },
  bool(key, value) {
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string') {
      const word = value.trim().toLowerCase();
      if (word === 'true') return true;
      if (word === 'false') return false;
    }
    throw refuse(key, 'true or false', value);
  },
  string(key, value) {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    throw refuse(key, 'a string', value);
  },
  list(key, value) {
    if (Array.isArray(value)) {
      return value.map((item) => {
        if (item !== null && typeof item === 'object') throw refuse(key, 'a list of strings', value);
        return String(item);
      });
    }
    if (typeof value === 'string') {
      return value
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    }
    throw refuse(key, 'a list (a TOML array or comma-separated text)', value);
  },
  duration_ms(key, value) {
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.round(value);
    if (typeof value === 'string') {
      const match = DURATION.exec(value.trim());
      if (match !== null) return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']);
    }
    throw refuse(key, 'a duration (a number of milliseconds, or a number with ms, s, m or h)', value);
  },
};

/**
 * One value of a config map, read as `type`:
 *
 * | type | reads | e.g. |
 * |---|---|---|
 * | `int` | an integer, or its decimal text | `42`, `"42"` → `42` |
 * | `float` | a number, or its text | `2`, `"0.25"` |
 * | `bool` | a boolean, or `true` / `false` | `"true"` → `true` |
 * | `string` | a string; a number or boolean as its text | `5` → `"5"` |
 * | `list` | an array (items as text), or comma-separated text (trimmed, empty items dropped) | `"a, b"` → `["a", "b"]` |
 * | `duration_ms` | milliseconds: a number, or a number with `ms`, `s`, `m` or `h` | `"2s"` → `2000` |
 *
 * A missing key (or `null`) takes `defaultValue`; without one it is an error. Errors are
 * {@link RpcError}s with code `-32602` naming the key, so throwing them from `configure` fails
 * the plugin's start with a message the operator can act on.
 *
 * @param {Record<string, unknown>} config the plugin's config map
 * @param {string} key
 * @param {'int' | 'float' | 'bool' | 'string' | 'list' | 'duration_ms'} type
 * @param {unknown} [defaultValue] used when the key is absent (returned as given)
 * @returns {any}
 * @throws {RpcError} when the value does not read as `type`, or the key is missing without a default
 */
export function configValue(config, key, type, defaultValue) {
  const read = Object.hasOwn(READERS, type) ? READERS[type] : undefined;
  if (read === undefined) throw new TypeError(`unknown config type \`${type}\`: expected one of ${CONFIG_TYPES.join(', ')}`);
  const value = config !== null && typeof config === 'object' && Object.hasOwn(config, key) ? config[key] : undefined;
  if (value === undefined || value === null) {
    if (defaultValue !== undefined) return defaultValue;
    throw RpcError.invalidParams(`config \`${key}\` is required`);
  }
  return read(key, value);
}
