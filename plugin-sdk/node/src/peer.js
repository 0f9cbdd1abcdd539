/**
 * One JSON-RPC 2.0 connection in both directions over newline-delimited JSON: incoming
 * requests are handed to a handler, each as its own promise, and answered as they finish;
 * outgoing requests get increasing integer ids and a pending promise each.
 *
 * @module
 * @internal
 */

import { codes, RpcError, toErrorObject } from './errors.js';
import { isObject } from './validate.js';

/** The protocol's default line limit: 16 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;

/**
 * @typedef {{result: unknown} | {error: {code: number, message: string, data?: unknown}}} Outcome
 *
 * @typedef {object} Closed why the connection ended
 * @property {'eof' | 'local' | 'io' | 'line_too_long' | 'invalid_utf8'} reason
 * @property {Error} [error]
 */

export class Peer {
  /**
   * @param {import('node:stream').Duplex} socket
   * @param {object} options
   * @param {number} [options.maxLineBytes] longest incoming line accepted (excluding `\n`)
   * @param {(method: string, params: unknown, id: string | number) => Promise<Outcome>} options.onRequest
   * @param {(method: string, ok: boolean) => void} [options.afterReply] runs once an answer is queued
   * @param {import('./log.js').Logger} options.log
   * @param {string} [options.remote] who is at the other end, in messages (default `gatekeeper`;
   *   the test host's side says `the plugin`)
   */
  constructor(socket, options) {
    this.socket = socket;
    this.maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.onRequest = options.onRequest;
    this.afterReply = options.afterReply ?? (() => {});
    this.log = options.log;
    this.remote = options.remote ?? 'gatekeeper';
    this.nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: NodeJS.Timeout, method: string}>} */
    this.pending = new Map();
    /** @type {Buffer[]} */
    this.partial = [];
    this.partialBytes = 0;
    this.decoder = new TextDecoder('utf-8', { fatal: true });
    this.finished = false;
    /** @type {Promise<Closed>} */
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });

    socket.on('data', (chunk) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    socket.on('end', () => this.finish({ reason: 'eof' }));
    socket.on('close', () => this.finish({ reason: 'eof' }));
    socket.on('error', (error) => this.finish({ reason: 'io', error }));
  }

  /** @param {Buffer} chunk */
  onData(chunk) {
    let start = 0;
    while (!this.finished) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline === -1 ? chunk.length : newline;
      if (this.partialBytes + (end - start) > this.maxLineBytes) {
        // Never buffered in full: close as soon as the line passes the limit.
        this.finish({
          reason: 'line_too_long',
          error: new Error(`${this.remote} sent a line over the ${this.maxLineBytes}-byte limit`),
        });
        return;
      }
      if (newline === -1) {
        if (end > start) {
          this.partial.push(chunk.subarray(start));
          this.partialBytes += end - start;
        }
        return;
      }
      let line = chunk.subarray(start, newline);
      if (this.partialBytes > 0) {
        line = Buffer.concat([...this.partial, line]);
        this.partial = [];
        this.partialBytes = 0;
      }
      start = newline + 1;
      this.onLine(line);
    }
  }

  /** @param {Buffer} bytes one line without its `\n` */
  onLine(bytes) {
    let text;
    try {
      text = this.decoder.decode(bytes);
    } catch {
      this.finish({ reason: 'invalid_utf8', error: new Error(`${this.remote} sent bytes that are not UTF-8`) });
      return;
    }
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() === '') return;
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      this.log.warn(`answering a line that is not JSON (${error.message}): ${text.slice(0, 200)}`);
      this.send({ jsonrpc: '2.0', id: null, error: { code: codes.PARSE_ERROR, message: `parse error: ${error.message}` } });
      return;
    }
    this.onMessage(message, text);
  }

  /** @param {unknown} message @param {string} text */
  onMessage(message, text) {
    const validId = (id) => typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
    const invalidRequest = (why) => {
      this.log.warn(`answering a message that is not JSON-RPC (${why}): ${text.slice(0, 200)}`);
      const id = isObject(message) && validId(message.id) ? message.id : null;
      this.send({ jsonrpc: '2.0', id, error: { code: codes.INVALID_REQUEST, message: `invalid request: ${why}` } });
    };
    if (!isObject(message)) return invalidRequest('not a JSON object');
    if (message.jsonrpc !== '2.0') return invalidRequest('`jsonrpc` must be "2.0"');
    if ('method' in message) {
      if (typeof message.method !== 'string') return invalidRequest('`method` must be a string');
      if (message.id === undefined) {
        this.log.debug(`ignoring notification \`${message.method}\``);
        return;
      }
      if (!validId(message.id)) return invalidRequest('`id` must be a number or a string');
      this.handleRequest(message.id, message.method, message.params);
      return;
    }
    if ('result' in message || 'error' in message) {
      this.handleResponse(message);
      return;
    }
    invalidRequest('neither a request nor a response');
  }

  /** @param {string | number} id @param {string} method @param {unknown} params */
  handleRequest(id, method, params) {
    Promise.resolve()
      .then(() => this.onRequest(method, params === undefined ? {} : params, id))
      .catch((error) => ({ error: toErrorObject(error) }))
      .then((outcome) => {
        const ok = 'result' in outcome;
        this.respond(id, outcome);
        this.afterReply(method, ok);
      });
  }

  /** @param {Record<string, unknown>} message */
  handleResponse(message) {
    const call = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (!call) {
      if (typeof message.id === 'number' && Number.isInteger(message.id) && message.id > 0 && message.id < this.nextId) {
        this.log.debug(`dropping a late response to request ${message.id}`);
      } else {
        this.log.warn(`ignoring a response to request ${JSON.stringify(message.id)}, which was never sent`);
      }
      return;
    }
    this.pending.delete(message.id);
    clearTimeout(call.timer);
    if ('error' in message) {
      const error = isObject(message.error) ? message.error : {};
      const code = Number.isInteger(error.code) ? error.code : codes.INTERNAL_ERROR;
      const text = typeof error.message === 'string' ? error.message : JSON.stringify(message.error);
      call.reject(new RpcError(code, text, error.data));
    } else {
      call.resolve(message.result);
    }
  }

  /**
   * Answers a request. A result that cannot be encoded, or whose line would pass the limit, is
   * answered with `-32603` instead.
   *
   * @param {string | number} id
   * @param {Outcome} outcome
   */
  respond(id, outcome) {
    let line;
    try {
      line = JSON.stringify({ jsonrpc: '2.0', id, ...outcome });
      if (Buffer.byteLength(line) > this.maxLineBytes) {
        throw new Error(`the answer is ${Buffer.byteLength(line)} bytes, over the ${this.maxLineBytes}-byte line limit`);
      }
    } catch (error) {
      this.log.error(`could not send the answer to request ${JSON.stringify(id)}`, error);
      const message = `could not encode the answer: ${error.message}`;
      line = JSON.stringify({ jsonrpc: '2.0', id, error: { code: codes.INTERNAL_ERROR, message } });
    }
    this.write(line);
  }

  /** @param {object} message */
  send(message) {
    return this.write(JSON.stringify(message));
  }

  /** @param {string} line compact JSON, no newline */
  write(line) {
    if (this.finished || this.ending) return false;
    this.socket.write(`${line}\n`);
    return true;
  }

  /**
   * Calls `method` on the proxy.
   *
   * @param {string} method
   * @param {Record<string, unknown>} params
   * @param {number} timeoutMs
   * @returns {Promise<unknown>} the result; rejects with an {@link RpcError}: the proxy's error,
   *   or `-32603` on timeout or a closed connection
   */
  request(method, params, timeoutMs) {
    return new Promise((resolve, reject) => {
      if (this.finished || this.ending) {
        reject(RpcError.internal(`cannot call \`${method}\`: the connection to ${this.remote} is closed`));
        return;
      }
      const id = this.nextId++;
      let line;
      try {
        line = JSON.stringify({ jsonrpc: '2.0', id, method, params });
      } catch (error) {
        reject(RpcError.internal(`cannot encode the params of \`${method}\`: ${error.message}`));
        return;
      }
      if (Buffer.byteLength(line) > this.maxLineBytes) {
        reject(RpcError.internal(`the \`${method}\` call is over the ${this.maxLineBytes}-byte line limit`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(RpcError.internal(`\`${method}\` got no answer from ${this.remote} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, method });
      this.write(line);
    });
  }

  /**
   * Writes what is queued, then closes (the answer to `stop` is queued before this).
   *
   * @param {number} graceMs how long to wait for the flush before closing anyway
   */
  endAfterFlush(graceMs = 250) {
    if (this.finished || this.ending) return;
    this.ending = true;
    const timer = setTimeout(() => this.finish({ reason: 'local' }), graceMs);
    this.socket.end(() => {
      clearTimeout(timer);
      this.finish({ reason: 'local' });
    });
  }

  /** Closes now. */
  close() {
    this.finish({ reason: 'local' });
  }

  /** @param {Closed} closed */
  finish(closed) {
    if (this.finished) return;
    this.finished = true;
    for (const [id, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(RpcError.internal(`\`${call.method}\` got no answer: the connection to ${this.remote} closed`));
      this.pending.delete(id);
    }
    this.partial = [];
    this.socket.destroy();
    this.resolveClosed(closed);
  }
}
