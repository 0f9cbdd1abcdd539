/**
 * Startup hints about what a plugin declares: a method whose name is close to a hook's (or is
 * a hook of another plugin type, or the wire's snake_case name) is never called, and a plugin
 * that declares no hooks is never called at all; both are warned about on stderr when serving
 * starts, since neither fails anything visibly.
 *
 * @module
 * @internal
 */

import { HOOKS, METHOD_NAMES, Plugin } from './plugins.js';

/** The lifecycle and declaration methods a plugin may override, besides hooks. */
const BASE_METHODS = ['configure', 'check', 'start', 'heartbeat', 'stop', 'hooks', 'bodies', 'noRetry', 'requestParts'];

/** The methods every SDK class has, which are not for overriding. */
const SDK_METHODS = new Set(['constructor', 'reportConfigError', 'reportConfigOk', 'manager']);

/** Levenshtein distance, case-insensitive. */
function distance(a, b) {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let previous = Array.from({ length: y.length + 1 }, (_, i) => i);
  for (let i = 1; i <= x.length; i++) {
    const current = [i];
    for (let j = 1; j <= y.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[y.length];
}

/** `modifyRequest` → `modify_request`. */
function snakeOf(camel) {
  return camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The names of the functions `plugin` defines itself: its class chain below the SDK's classes, and its own fields. */
function ownMethodNames(plugin) {
  const names = new Set();
  const isFunction = (object, name) => {
    const descriptor = Object.getOwnPropertyDescriptor(object, name);
    return descriptor !== undefined && typeof descriptor.value === 'function';
  };
  for (const name of Object.keys(plugin)) if (isFunction(plugin, name)) names.add(name);
  for (let proto = Object.getPrototypeOf(plugin); proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    // Stop at the SDK's own classes (of this copy of the SDK or another).
    if (proto === Plugin.prototype || isSdkClass(proto.constructor)) break;
    for (const name of Object.getOwnPropertyNames(proto)) if (isFunction(proto, name)) names.add(name);
  }
  return [...names].filter((name) => !SDK_METHODS.has(name));
}

/** Whether `ctor` is one of the SDK's plugin classes (of any copy of the SDK). */
function isSdkClass(ctor) {
  return typeof ctor === 'function' && ctor[Symbol.for('gatekeeper-plugin-sdk.class')] === ctor;
}

/**
 * Warnings about the methods of `plugin` (served as `type`) that look like hooks but are not
 * called, and about declaring no hooks.
 *
 * @param {object} plugin
 * @param {string} type
 * @param {string[]} declared the hooks the plugin declares
 * @returns {string[]}
 */
export function declarationHints(plugin, type, declared) {
  const hints = [];
  const own = HOOKS[type].map((hook) => METHOD_NAMES[hook]);
  const known = new Set([...own, ...BASE_METHODS, ...(type === 'upstream' ? ['startUpstreams'] : [])]);
  const otherTypes = Object.entries(HOOKS).filter(([other]) => other !== type);
  for (const name of ownMethodNames(plugin)) {
    if (known.has(name)) continue;
    const wire = HOOKS[type].find((hook) => hook === name);
    if (wire !== undefined) {
      hints.push(`\`${name}\` is the wire name: the SDK calls \`${METHOD_NAMES[wire]}\`, so \`${name}\` is never called`);
      continue;
    }
    const foreign = otherTypes.find(([, hooks]) => hooks.some((hook) => METHOD_NAMES[hook] === name || hook === name));
    if (foreign !== undefined) {
      hints.push(`\`${name}\` is a hook of ${foreign[0]} plugins, but this is a ${type} plugin: it is never called`);
      continue;
    }
    const score = (candidate) => Math.min(distance(name, candidate), distance(name, snakeOf(candidate)));
    const closest = [...known].reduce((best, candidate) => (score(candidate) < score(best) ? candidate : best));
    if (score(closest) <= (closest.length < 8 ? 1 : 2)) {
      hints.push(`\`${name}\` is not a method the SDK calls: did you mean \`${closest}\`? (as written it is never called)`);
    }
  }
  if (declared.length === 0 && type !== 'upstream') {
    hints.push(
      `this ${type} plugin declares no hooks, so gatekeeper never calls it: override one of ${own.join(', ')} ` +
        '(or return their wire names from hooks())',
    );
  }
  return hints;
}
