/**
 * An in-memory connection: two duplex streams, each writing into the other's readable side, as
 * the two ends of a socket pair. Ending one end's writable side ends the other's readable side
 * (after what was written before); destroying one end closes the other once it has read what
 * was sent.
 *
 * @module
 * @internal
 */

import { Duplex } from 'node:stream';

class End extends Duplex {
  constructor() {
    super({ allowHalfOpen: false });
    /** @type {End | null} */
    this.other = null;
    /** Whether this end's readable side has been sent EOF. */
    this.eof = false;
  }

  _read() {}

  _write(chunk, encoding, callback) {
    const other = this.other;
    if (other === null || other.destroyed || other.eof) {
      callback(Object.assign(new Error('write after the other end closed'), { code: 'EPIPE' }));
      return;
    }
    other.push(chunk);
    callback();
  }

  _final(callback) {
    this.#endOther();
    callback();
  }

  _destroy(error, callback) {
    this.#endOther();
    callback(error);
  }

  /** The other end reads EOF after what it was sent (and then closes: no half-open). */
  #endOther() {
    const other = this.other;
    if (other !== null && !other.destroyed && !other.eof) {
      other.eof = true;
      other.push(null);
    }
  }
}

/**
 * Two connected in-memory duplex streams.
 *
 * @returns {[Duplex, Duplex]}
 */
export function duplexPair() {
  const a = new End();
  const b = new End();
  a.other = b;
  b.other = a;
  return [a, b];
}
