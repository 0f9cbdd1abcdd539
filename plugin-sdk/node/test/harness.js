// Test helpers: a "proxy" end of an in-memory connection, with a plugin served by `run` on the
// other end, played message by message (wire.json's steps), and the conformance suite's
// matching rules. (A plugin author's tests use the package's test host instead:
// `gatekeeper-plugin-sdk/testing`.)

import { run, silentLogger } from 'gatekeeper-plugin-sdk';
import { duplexPair } from 'gatekeeper-plugin-sdk/testing';

/** How long one read from the plugin may take before the step fails. */
export const STEP_TIMEOUT_MS = 2000;

/**
 * The proxy's side of a connection: reads the plugin's lines as parsed messages.
 */
export class ProxySide {
  /** @param {import('node:stream').Duplex} socket */
  constructor(socket) {
    this.socket = socket;
    /** @type {unknown[]} */
    this.queue = [];
    /** @type {string[]} raw lines that were not JSON */
    this.garbage = [];
    this.ended = false;
    /** @type {(() => void)[]} */
    this.waiters = [];
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('data', (text) => {
      buffered += text;
      let newline;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          this.queue.push(JSON.parse(line));
        } catch {
          this.garbage.push(line);
          this.queue.push({ $unparsable: line });
        }
        this.wake();
      }
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Waits until `ready()` holds, or fails after `timeoutMs` with `what`. */
  async until(ready, what, timeoutMs = STEP_TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next message from the plugin. */
  async next(timeoutMs = STEP_TIMEOUT_MS) {
    await this.until(() => this.queue.length > 0 || this.ended, 'a message from the plugin', timeoutMs);
    if (this.queue.length === 0) throw new Error('the plugin closed the connection instead of sending a message');
    return this.queue.shift();
  }

  /** Sends one message (an object, as one compact line) or a raw string (sent as is). */
  send(message) {
    this.socket.write(typeof message === 'string' ? message : `${JSON.stringify(message)}\n`);
  }

  /** Waits for the plugin to close the connection, with no message before. */
  async closedByPlugin(timeoutMs = STEP_TIMEOUT_MS) {
    await this.until(() => this.queue.length > 0 || this.ended, 'the plugin to close the connection', timeoutMs);
    if (this.queue.length > 0) {
      throw new Error(`expected the connection to close, got ${JSON.stringify(this.queue[0])}`);
    }
  }

  close() {
    this.socket.end();
  }
}

/**
 * Serves `plugin` with `run` over a fresh in-memory connection (the package's `duplexPair`,
 * the test host's transport).
 *
 * @returns {Promise<{proxy: ProxySide, done: Promise<void>, outcome: () => ('pending'|'resolved'|'rejected'), cleanup: () => Promise<void>}>}
 */
export async function session(plugin, env = {}, options = {}) {
  const [proxyEnd, pluginEnd] = duplexPair();
  const proxy = new ProxySide(proxyEnd);
  let state = 'pending';
  const done = run(plugin, pluginEnd, { token: 't', protocolVersion: 1, ...env }, { logger: silentLogger, ...options });
  done.then(
    () => {
      state = 'resolved';
    },
    () => {
      state = 'rejected';
    },
  );
  done.catch(() => {});
  const cleanup = async () => {
    proxyEnd.destroy();
    pluginEnd.destroy();
  };
  return { proxy, done, outcome: () => state, cleanup };
}

/** Resolves with `promise`'s value, or rejects after `ms` with `what`. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);
const isContains = (value) => isObject(value) && Object.keys(value).length === 1 && Array.isArray(value.$contains);

/**
 * The conformance suite's matching rules (plugin-sdk/conformance/README.md): `"$any"` matches
 * any present value; `null` matches a missing field or `null`; objects are subsets (every
 * expected field present and matching); `{"$contains": [...]}` matches an array holding those
 * elements in any order (each matched by a distinct element, with these same rules); other
 * arrays must have the same length and match element by element; anything else is `===`.
 *
 * @returns {string | null} why `actual` does not match, or `null` when it does
 */
export function mismatch(expected, actual, at = '$') {
  if (expected === '$any') return actual === undefined ? `${at}: missing (expected any value)` : null;
  if (expected === null) return actual === undefined || actual === null ? null : `${at}: expected null or absent, got ${JSON.stringify(actual)}`;
  if (actual === undefined) return `${at}: missing (expected ${JSON.stringify(expected)})`;
  if (isContains(expected)) {
    if (!Array.isArray(actual)) return `${at}: expected an array, got ${JSON.stringify(actual)}`;
    return assign(expected.$contains, actual, at) ? null : `${at}: ${JSON.stringify(actual)} does not contain all of ${JSON.stringify(expected.$contains)}`;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${at}: expected an array, got ${JSON.stringify(actual)}`;
    if (actual.length !== expected.length) return `${at}: expected ${expected.length} elements, got ${JSON.stringify(actual)}`;
    for (let i = 0; i < expected.length; i++) {
      const why = mismatch(expected[i], actual[i], `${at}[${i}]`);
      if (why) return why;
    }
    return null;
  }
  if (isObject(expected)) {
    if (!isObject(actual)) return `${at}: expected an object, got ${JSON.stringify(actual)}`;
    for (const [key, value] of Object.entries(expected)) {
      const why = mismatch(value, actual[key], `${at}.${key}`);
      if (why) return why;
    }
    return null;
  }
  return expected === actual ? null : `${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

/**
 * Whether each of `patterns` can be matched to a distinct element of `items` (backtracking, so
 * overlapping patterns are assigned correctly).
 */
export function assign(patterns, items, at = '$') {
  const used = new Array(items.length).fill(false);
  const place = (p) => {
    if (p === patterns.length) return true;
    for (let i = 0; i < items.length; i++) {
      if (!used[i] && mismatch(patterns[p], items[i], at) === null) {
        used[i] = true;
        if (place(p + 1)) return true;
        used[i] = false;
      }
    }
    return false;
  };
  return place(0);
}
