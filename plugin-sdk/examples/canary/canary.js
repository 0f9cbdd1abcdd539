#!/usr/bin/env node
/**
 * canary: an example gatekeeper router plugin (Node, with the SDK in plugin-sdk/node).
 *
 * Sends a share of the traffic to a canary upstream and the rest to the stable one:
 *
 * 1. a request whose first path segment is a prefix of another known upstream (neither
 *    `stable` nor `canary`), or whose Host is one of its hostnames, goes there, as with the
 *    built-in router (the prefix is stripped);
 * 2. every other request goes to the canary upstream when it carries the configured header or
 *    cookie, or falls in the configured percentage (per client with `sticky`), and the canary
 *    upstream is known; else to the stable upstream. A first segment that is a prefix of the
 *    stable or canary upstream is stripped;
 * 3. no stable upstream (and no canary chosen): no route (404).
 *
 * Upstreams are learnt from gatekeeper's add_upstream / remove_upstream calls. See README.md.
 */

import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { header, RouterPlugin, RpcError, serve } from '../../node/index.js';

/** A config value as a string (TOML values may be numbers or booleans; flags are strings). */
function str(value) {
  return value === undefined || value === null ? undefined : String(value).trim();
}

/** `name: value` / `name=value` / `name` → {name, value?}; undefined when empty. */
export function parseMatch(spec, separator, key) {
  const text = str(spec);
  if (text === undefined || text === '') return undefined;
  const at = text.indexOf(separator);
  const name = (at < 0 ? text : text.slice(0, at)).trim();
  const value = at < 0 ? undefined : text.slice(at + 1).trim();
  if (name === '') throw RpcError.invalidParams(`config \`${key}\` needs a name: \`${text}\``);
  return { name, value };
}

/** The `name=value` pairs of every Cookie header of `headers`. */
export function cookies(headers) {
  const found = new Map();
  for (const [name, value] of headers) {
    if (name.toLowerCase() !== 'cookie') continue;
    for (const part of value.split(';')) {
      const at = part.indexOf('=');
      const key = (at < 0 ? part : part.slice(0, at)).trim();
      if (key !== '' && !found.has(key)) found.set(key, at < 0 ? '' : part.slice(at + 1).trim());
    }
  }
  return found;
}

/** The client's IP address (without the port) of a `remote_addr` like `1.2.3.4:5` or `[::1]:5`. */
export function clientIp(remoteAddr) {
  const addr = String(remoteAddr ?? '');
  if (addr.startsWith('[')) return addr.slice(1, addr.indexOf(']') < 0 ? undefined : addr.indexOf(']'));
  const at = addr.lastIndexOf(':');
  return at < 0 ? addr : addr.slice(0, at);
}

/** A number in [0, 100) fixed for `key`. */
export function bucket(key) {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % 10000 / 100;
}

/** The first path segment of `path` and the path without it (`/api/x?` → `api`, `/x`). */
function firstSegment(path) {
  const rest = path.startsWith('/') ? path.slice(1) : path;
  const at = rest.indexOf('/');
  const segment = at < 0 ? rest : rest.slice(0, at);
  return { segment, stripped: at < 0 ? '/' : rest.slice(at) };
}

export class Canary extends RouterPlugin {
  /** @type {Map<string, import('../../node/index.js').Upstream>} upstreams by id */
  upstreams = new Map();
  stable = 'stable';
  canary = 'canary';
  percent = 0;
  sticky = false;
  /** @type {{name: string, value?: string} | undefined} */
  header = undefined;
  /** @type {{name: string, value?: string} | undefined} */
  cookie = undefined;

  async configure(config) {
    this.stable = str(config.stable) || 'stable';
    this.canary = str(config.canary) || 'canary';
    const percent = Number(str(config.percent) ?? 0);
    if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw RpcError.invalidParams(`config \`percent\` must be a number from 0 to 100, not \`${config.percent}\``);
    }
    this.percent = percent;
    const sticky = str(config.sticky) ?? 'false';
    if (!['true', 'false'].includes(sticky.toLowerCase())) {
      throw RpcError.invalidParams(`config \`sticky\` must be true or false, not \`${config.sticky}\``);
    }
    this.sticky = sticky.toLowerCase() === 'true';
    this.header = parseMatch(config.header, ':', 'header');
    if (this.header) this.header.name = this.header.name.toLowerCase();
    this.cookie = parseMatch(config.cookie, '=', 'cookie');
    process.stderr.write(
      `canary: ${this.percent}% to \`${this.canary}\`${this.sticky ? ' (sticky)' : ''}, else \`${this.stable}\`` +
        `${this.header ? `; header ${this.header.name}` : ''}${this.cookie ? `; cookie ${this.cookie.name}` : ''}\n`,
    );
  }

  async addUpstream(upstream) {
    this.upstreams.set(upstream.id, upstream);
  }

  async removeUpstream(id) {
    this.upstreams.delete(id);
  }

  /** Whether the request asks for the canary (header, cookie, or its share of the traffic). */
  wantsCanary(request) {
    if (this.header) {
      const value = header(request.headers, this.header.name);
      if (value !== undefined && (this.header.value === undefined || value.trim() === this.header.value)) return true;
    }
    if (this.cookie) {
      const value = cookies(request.headers).get(this.cookie.name);
      if (value !== undefined && (this.cookie.value === undefined || value === this.cookie.value)) return true;
    }
    if (this.percent <= 0) return false;
    if (this.percent >= 100) return true;
    const draw = this.sticky ? bucket(clientIp(request.remote_addr)) : Math.random() * 100;
    return draw < this.percent;
  }

  async routeRequest(request) {
    const { segment, stripped } = firstSegment(request.path);
    const host = String(request.host ?? '').replace(/:\d+$/, '').toLowerCase();
    const listens = (u) => !u.protocols?.length || u.protocols.includes(request.listener);
    const others = [...this.upstreams.values()].filter((u) => u.id !== this.stable && u.id !== this.canary && listens(u));
    // 1. Another upstream's prefix, then its hostname: the built-in router's rule.
    const byPrefix = others.find((u) => segment !== '' && u.prefixes?.includes(segment));
    if (byPrefix) return { upstream: byPrefix.id, prefixless_path: stripped };
    const byHost = others.find((u) => u.hostnames?.some((h) => h.toLowerCase() === host));
    if (byHost) return { upstream: byHost.id };
    // 2. Canary or stable, whichever is chosen and known.
    const target = this.wantsCanary(request) && this.upstreams.has(this.canary) ? this.canary : this.stable;
    if (!this.upstreams.has(target)) return { upstream: null };
    const ownPrefix = [this.stable, this.canary].some((id) => this.upstreams.get(id)?.prefixes?.includes(segment));
    return segment !== '' && ownPrefix ? { upstream: target, prefixless_path: stripped } : { upstream: target };
  }
}

// Serve when run as a program (not when imported, e.g. by a test).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  serve(new Canary());
}
