// Tests of `run` and `serve` over real Unix sockets: error mapping, declared hooks, framing,
// the line limit, concurrency, the manager, and the process's exit codes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { codes, createLogger, ModifierPlugin, RouterPlugin, RpcError, run, UpstreamPlugin } from '../index.js';
import { session, within } from './harness.js';

const REQUEST = { method: 'GET', path: '/x', headers: [['host', 'h']] };
const T = { timeout: 10_000 };

/** Starts `plugin`, answers its handshake, and returns the session plus the handshake. */
async function started(plugin, env, options) {
  const s = await session(plugin, env, options);
  const handshake = await s.proxy.next();
  assert.equal(handshake.method, 'handshake');
  s.proxy.send({ jsonrpc: '2.0', id: handshake.id, result: { protocol_version: 1, name: 'p', type: 'modifier' } });
  return { ...s, handshake };
}

/** Sends a request and returns the next message (its answer, in these tests). */
async function call(proxy, id, method, params) {
  proxy.send({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
  return proxy.next();
}

class Thrower extends ModifierPlugin {
  async modifyRequest(request) {
    this.seen = structuredClone(request);
    const mode = request.headers[0]?.[1];
    if (mode === 'rpc') throw new RpcError(codes.UNAVAILABLE, 'not now', { retry: true });
    if (mode === 'plain') throw new Error('kaput');
    if (mode === 'string') return 'not an object';
    if (mode === 'huge') return { request: { ...request, path: 'x'.repeat(500) } };
    if (mode === 'nothing') return undefined;
    return { request };
  }
}

test('hook errors: RpcError keeps its code, other errors are -32603 and logged with a stack', T, async () => {
  const lines = [];
  const logger = createLogger({ level: 'debug', write: (text) => lines.push(text) });
  const s = await started(new Thrower(), { maxLineBytes: 400 }, { logger });
  try {
    const req = (mode) => ({ request: { ...REQUEST, headers: [['x-mode', mode]] } });
    assert.deepEqual(await call(s.proxy, 1, 'modify_request', req('rpc')), {
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32020, message: 'not now', data: { retry: true } },
    });
    const plain = await call(s.proxy, 2, 'modify_request', req('plain'));
    assert.deepEqual(plain.error, { code: -32603, message: 'kaput' });
    assert.ok(lines.some((line) => line.includes('`modify_request` failed') && line.includes('Error: kaput\n    at ')), lines.join(''));
    const wrong = await call(s.proxy, 3, 'modify_request', req('string'));
    assert.equal(wrong.error.code, -32603);
    assert.match(wrong.error.message, /modifyRequest\(\) returned a string/);
    const huge = await call(s.proxy, 4, 'modify_request', req('huge'));
    assert.equal(huge.error.code, -32603);
    assert.match(huge.error.message, /line limit/);
    assert.deepEqual(await call(s.proxy, 5, 'modify_request', req('nothing')), { jsonrpc: '2.0', id: 5, result: {} });
  } finally {
    await s.cleanup();
  }
});

test('bad params are -32602 and name the field; the connection stays usable', T, async () => {
  const thrower = new Thrower();
  const s = await started(thrower);
  try {
    const cases = [
      [{}, /`request` must be an object, but it is missing/],
      [{ request: { ...REQUEST, method: 7 } }, /`request.method` must be a string/],
      [{ request: { ...REQUEST, headers: [['a']] } }, /`request.headers\[0\]`/],
      [{ request: { ...REQUEST, context: [] } }, /`request.context` must be an object/],
    ];
    let id = 1;
    for (const [params, message] of cases) {
      const answer = await call(s.proxy, id++, 'modify_request', params);
      assert.equal(answer.error?.code, -32602, JSON.stringify(answer));
      assert.match(answer.error.message, message);
    }
    const notObject = await call(s.proxy, id++, 'heartbeat', [1, 2]);
    assert.equal(notObject.error.code, -32602);
    const badConfig = await call(s.proxy, id++, 'configure', { config: 'x' });
    assert.equal(badConfig.error.code, -32602);
    // Missing params read as {}.
    assert.deepEqual((await call(s.proxy, id++, 'heartbeat')).result, {});
    // Defaults are filled in for the plugin.
    const filled = await call(s.proxy, id++, 'modify_request', { request: { method: 'GET', path: '/p' } });
    // The request came back unchanged: nothing to patch.
    assert.deepEqual(filled.result, {});
    assert.deepEqual(thrower.seen, {
      method: 'GET',
      path: '/p',
      listener: '',
      remote_addr: '',
      host: '',
      prefixless_path: '',
      headers: [],
      context: {},
    });
  } finally {
    await s.cleanup();
  }
});

test('bodies() is sent in the handshake as `bodies`', T, async () => {
  class Bodies extends ModifierPlugin {
    async modifyRequest(request) {
      return { request };
    }

    bodies() {
      return ['modify_request'];
    }
  }
  const s = await started(new Bodies(), { pluginType: 'modifier' });
  try {
    assert.deepEqual(s.handshake.params, {
      token: 't',
      protocol_version: 1,
      hooks: ['modify_request'],
      bodies: ['modify_request'],
    });
  } finally {
    await s.cleanup();
  }
});

test('requestParts() is sent in the handshake as `parts`; a partial request gets a patch', T, async () => {
  class NeedsAuthorization extends ModifierPlugin {
    async modifyRequest(request) {
      const token = request.headers.find(([name]) => name === 'authorization')[1];
      request.headers.push(['x-user', token]);
      return { request };
    }

    requestParts() {
      return ['header:authorization'];
    }
  }
  const s = await started(new NeedsAuthorization(), { pluginType: 'modifier' });
  try {
    assert.deepEqual(s.handshake.params.parts, { modify_request: ['header:authorization'] });
    const partial = { method: 'GET', path: '/x', headers: [['authorization', 'alice']] };
    const answer = await call(s.proxy, 1, 'modify_request', { request: partial });
    assert.deepEqual(answer.result, { patch: { set_headers: { 'x-user': 'alice' } } });
  } finally {
    await s.cleanup();
  }
});

test('noRetry() is sent in the handshake as `no_retry`', T, async () => {
  class ChargesOnce extends ModifierPlugin {
    async modifyRequest(request) {
      return { request };
    }

    noRetry() {
      return ['modify_request'];
    }
  }
  const s = await started(new ChargesOnce(), { pluginType: 'modifier' });
  try {
    assert.deepEqual(s.handshake.params, {
      token: 't',
      protocol_version: 1,
      hooks: ['modify_request'],
      no_retry: ['modify_request'],
    });
  } finally {
    await s.cleanup();
  }
});

test('only overridden hooks are declared; an undeclared hook or unknown method is -32601', T, async () => {
  class OnlyRoute extends RouterPlugin {
    async routeRequest() {
      return { upstream: 'a' };
    }
  }
  const s = await started(new OnlyRoute(), { pluginType: 'router' });
  try {
    assert.deepEqual(s.handshake.params, { token: 't', protocol_version: 1, hooks: ['route_request'] });
    assert.deepEqual((await call(s.proxy, 1, 'route_request', { request: REQUEST })).result, { upstream: 'a' });
    const undeclared = await call(s.proxy, 2, 'add_upstream', { upstream: { id: 'a' } });
    assert.equal(undeclared.error.code, -32601);
    assert.match(undeclared.error.message, /not declared/);
    const foreign = await call(s.proxy, 3, 'modify_request', { request: REQUEST });
    assert.equal(foreign.error.code, -32601);
    const handshake = await call(s.proxy, 4, 'handshake', {});
    assert.equal(handshake.error.code, -32601);
  } finally {
    await s.cleanup();
  }
});

test('lifecycle hooks run in order and their errors are answered', T, async () => {
  const seen = [];
  class Lifecycle extends ModifierPlugin {
    async configure(config) {
      seen.push(['configure', config]);
      if (config.bad) throw RpcError.invalidParams('`bad` is not allowed');
    }
    async start() {
      seen.push(['start']);
    }
    async heartbeat() {
      seen.push(['heartbeat']);
    }
    async stop() {
      seen.push(['stop']);
      throw new Error('stop failed');
    }
  }
  const s = await started(new Lifecycle());
  try {
    assert.deepEqual((await call(s.proxy, 1, 'configure', { config: { bad: true } })).error, { code: -32602, message: '`bad` is not allowed' });
    assert.deepEqual((await call(s.proxy, 2, 'configure', {})).result, {});
    assert.deepEqual((await call(s.proxy, 3, 'start', {})).result, {});
    assert.deepEqual((await call(s.proxy, 4, 'heartbeat', {})).result, {});
    // `stop` ends serving even when it fails.
    assert.equal((await call(s.proxy, 5, 'stop', {})).error.code, -32603);
    await s.proxy.closedByPlugin();
    await within(s.done, 2000, 'run() after stop');
    assert.deepEqual(seen, [['configure', { bad: true }], ['configure', {}], ['start'], ['heartbeat'], ['stop']]);
  } finally {
    await s.cleanup();
  }
});

test('calls run concurrently: a slow hook does not hold back a fast one', T, async () => {
  let release;
  const gate = new Promise((resolve) => {
    release = resolve;
  });
  class Slow extends ModifierPlugin {
    async modifyRequest(request) {
      if (request.path === '/slow') await gate;
      return { request };
    }
  }
  const s = await started(new Slow());
  try {
    s.proxy.send({ jsonrpc: '2.0', id: 'slow', method: 'modify_request', params: { request: { ...REQUEST, path: '/slow' } } });
    s.proxy.send({ jsonrpc: '2.0', id: 'fast', method: 'modify_request', params: { request: REQUEST } });
    assert.equal((await s.proxy.next()).id, 'fast');
    release();
    assert.equal((await s.proxy.next()).id, 'slow');
  } finally {
    await s.cleanup();
  }
});

test('framing: \\r\\n, empty lines, split chunks, notifications, garbage', T, async () => {
  const s = await started(new Thrower());
  try {
    const line = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'heartbeat', params: {} });
    s.proxy.send(`\n\r\n${line.slice(0, 10)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    s.proxy.send(`${line.slice(10)}\r\n`);
    assert.deepEqual(await s.proxy.next(), { jsonrpc: '2.0', id: 1, result: {} });
    // A notification gets no answer.
    s.proxy.send({ jsonrpc: '2.0', method: 'heartbeat', params: {} });
    // Not JSON: -32700 with id null. Not JSON-RPC: -32600. The connection stays open.
    s.proxy.send('{nope\n');
    assert.deepEqual((await s.proxy.next()).error.code, -32700);
    s.proxy.send('{"id":3,"method":"heartbeat"}\n');
    const invalid = await s.proxy.next();
    assert.equal(invalid.error.code, -32600);
    assert.equal(invalid.id, 3);
    s.proxy.send('[1,2]\n');
    assert.equal((await s.proxy.next()).id, null);
    // A response to a request never sent is ignored.
    s.proxy.send({ jsonrpc: '2.0', id: 99, result: {} });
    assert.deepEqual(await call(s.proxy, 4, 'heartbeat', {}), { jsonrpc: '2.0', id: 4, result: {} });
    assert.equal(s.outcome(), 'pending');
  } finally {
    await s.cleanup();
  }
});

test('every outgoing line is compact JSON', T, async () => {
  const s = await started(new Thrower());
  try {
    const raw = [];
    s.proxy.socket.on('data', (text) => raw.push(text));
    await call(s.proxy, 1, 'modify_request', { request: REQUEST });
    const text = raw.join('');
    assert.ok(text.endsWith('\n'));
    assert.equal(text.split('\n').length, 2);
    assert.equal(text.trimEnd(), JSON.stringify(JSON.parse(text)));
  } finally {
    await s.cleanup();
  }
});

test('a line over GATEKEEPER_MAX_LINE_BYTES closes the connection and fails run', T, async () => {
  const s = await started(new Thrower(), { maxLineBytes: 128 });
  try {
    // Exactly the limit is accepted.
    const ok = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'heartbeat', params: {} });
    s.proxy.send(`${ok}${' '.repeat(128 - ok.length)}\n`);
    assert.deepEqual(await s.proxy.next(), { jsonrpc: '2.0', id: 1, result: {} });
    // Over it, without a newline: closed before the line ends.
    s.proxy.send('x'.repeat(129));
    await s.proxy.closedByPlugin();
    await assert.rejects(within(s.done, 2000, 'run()'), /128-byte limit/);
  } finally {
    await s.cleanup();
  }
});

test('bytes that are not UTF-8 close the connection', T, async () => {
  const s = await started(new Thrower());
  try {
    s.proxy.socket.write(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
    await s.proxy.closedByPlugin();
    await assert.rejects(within(s.done, 2000, 'run()'), /UTF-8/);
  } finally {
    await s.cleanup();
  }
});

test('a refused handshake fails run', T, async () => {
  const s = await session(new Thrower(), { token: 'wrong' });
  try {
    const handshake = await s.proxy.next();
    assert.equal(handshake.params.token, 'wrong');
    s.proxy.send({ jsonrpc: '2.0', id: handshake.id, error: { code: -32000, message: 'wrong token' } });
    await assert.rejects(within(s.done, 2000, 'run()'), /handshake with gatekeeper failed: wrong token/);
  } finally {
    await s.cleanup();
  }
});

test('run refuses a plugin of another type, and an untyped plugin', async () => {
  const socket = new net.Socket();
  await assert.rejects(run(new Thrower(), socket, { token: 't', pluginType: 'router' }), /started this program as a `router` plugin, but it is a `modifier` plugin/);
  await assert.rejects(run({}, new net.Socket(), { token: 't' }), /must be an instance of/);
});

class Registry extends UpstreamPlugin {
  async startUpstreams(manager) {
    await manager.addUpstream({ id: 'api', prefixes: ['api'] });
  }
}

test('manager: calls get increasing ids; errors keep the proxy code; this.manager works later', T, async () => {
  const plugin = new Registry();
  assert.equal(plugin.manager, null);
  const s = await started(plugin, { pluginType: 'upstream' });
  try {
    s.proxy.send({ jsonrpc: '2.0', id: 1, method: 'start', params: {} });
    const add = await s.proxy.next();
    assert.deepEqual(add, { jsonrpc: '2.0', id: 2, method: 'add_upstream', params: { upstream: { id: 'api', prefixes: ['api'] } } });
    s.proxy.send({ jsonrpc: '2.0', id: add.id, result: {} });
    assert.deepEqual(await s.proxy.next(), { jsonrpc: '2.0', id: 1, result: {} });

    const later = plugin.manager.removeBackend('api', 'b1');
    const remove = await s.proxy.next();
    assert.deepEqual(remove, { jsonrpc: '2.0', id: 3, method: 'remove_backend', params: { upstream_id: 'api', backend_id: 'b1' } });
    s.proxy.send({ jsonrpc: '2.0', id: 3, error: { code: -32013, message: 'no backend `b1`' } });
    await assert.rejects(later, (error) => error instanceof RpcError && error.code === -32013 && error.message === 'no backend `b1`');

    const pending = plugin.manager.addBackend('api', { id: 'b', address: 'http://127.0.0.1:1' });
    assert.equal((await s.proxy.next()).method, 'add_backend');
    s.proxy.close();
    await assert.rejects(pending, (error) => error instanceof RpcError && error.code === -32603 && /closed/.test(error.message));
    await within(s.done, 2000, 'run()');
    await assert.rejects(plugin.manager.removeUpstream('api'), /closed/);
  } finally {
    await s.cleanup();
  }
});

test('manager: a call without an answer times out with -32603', T, async () => {
  const plugin = new Registry();
  const s = await started(plugin, { pluginType: 'upstream' }, { managerTimeoutMs: 50 });
  try {
    s.proxy.send({ jsonrpc: '2.0', id: 1, method: 'start', params: {} });
    assert.equal((await s.proxy.next()).method, 'add_upstream');
    const answer = await s.proxy.next();
    assert.equal(answer.id, 1);
    assert.equal(answer.error.code, -32603);
    assert.match(answer.error.message, /`add_upstream` got no answer from gatekeeper within 50 ms/);
    // A late answer is dropped quietly.
    s.proxy.send({ jsonrpc: '2.0', id: 2, result: {} });
    assert.deepEqual(await call(s.proxy, 3, 'heartbeat', {}), { jsonrpc: '2.0', id: 3, result: {} });
  } finally {
    await s.cleanup();
  }
});

// ---- serve(): the real process ----

const PLUGIN = fileURLToPath(new URL('../conformance-plugin.js', import.meta.url));

function spawnPlugin(env) {
  const child = spawn(process.execPath, [PLUGIN], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out, exited };
}

test('serve: without GATEKEEPER_* it says "run me from gatekeeper" and exits 2', T, async () => {
  const { out, exited } = spawnPlugin({});
  assert.equal(await within(exited, 5000, 'exit'), 2);
  assert.match(out.stderr, /GATEKEEPER_SOCKET is not set.*run me from gatekeeper/);
  assert.equal(out.stdout, '');
});

test('serve: connects, handshakes, answers, and exits 0 after stop', T, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gk-node-'));
  const socketPath = path.join(dir, 'p.sock');
  const server = net.createServer();
  await new Promise((resolve) => server.listen(socketPath, resolve));
  const connected = new Promise((resolve) => server.once('connection', resolve));
  const { out, exited } = spawnPlugin({
    GATEKEEPER_SOCKET: socketPath,
    GATEKEEPER_TOKEN: 'tok',
    GATEKEEPER_PLUGIN_NAME: 'conf',
    GATEKEEPER_PLUGIN_TYPE: 'metric',
    GATEKEEPER_PROTOCOL_VERSION: '1',
  });
  try {
    const { ProxySide } = await import('./harness.js');
    const proxy = new ProxySide(await within(connected, 5000, 'connect'));
    const handshake = await proxy.next(5000);
    assert.equal(handshake.params.token, 'tok');
    assert.equal(handshake.params.hooks.length, 5);
    proxy.send({ jsonrpc: '2.0', id: handshake.id, result: { protocol_version: 1, name: 'conf', type: 'metric' } });
    assert.deepEqual(await call(proxy, 1, 'configure', { config: {} }), { jsonrpc: '2.0', id: 1, result: {} });
    assert.deepEqual(await call(proxy, 2, 'stop', {}), { jsonrpc: '2.0', id: 2, result: {} });
    await proxy.closedByPlugin();
    assert.equal(await within(exited, 5000, 'exit'), 0);
    assert.equal(out.stdout, '', 'the SDK never writes to stdout');
  } finally {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve: exits 0 when gatekeeper closes the socket', T, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gk-node-'));
  const socketPath = path.join(dir, 'p.sock');
  const server = net.createServer();
  await new Promise((resolve) => server.listen(socketPath, resolve));
  const connected = new Promise((resolve) => server.once('connection', resolve));
  const { exited } = spawnPlugin({
    GATEKEEPER_SOCKET: socketPath,
    GATEKEEPER_TOKEN: 't',
    GATEKEEPER_PLUGIN_TYPE: 'router',
    GATEKEEPER_PROTOCOL_VERSION: '1',
  });
  let proxy;
  try {
    const { ProxySide } = await import('./harness.js');
    proxy = new ProxySide(await within(connected, 5000, 'connect'));
    const handshake = await proxy.next(5000);
    proxy.send({ jsonrpc: '2.0', id: handshake.id, result: { protocol_version: 1, name: 'r', type: 'router' } });
    assert.deepEqual(await call(proxy, 1, 'configure', {}), { jsonrpc: '2.0', id: 1, result: {} });
    proxy.close();
    assert.equal(await within(exited, 5000, 'exit'), 0);
  } finally {
    proxy?.socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve: exits 2 on a type mismatch and 1 when it cannot connect', T, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gk-node-'));
  const env = {
    GATEKEEPER_SOCKET: path.join(dir, 'nobody-listens.sock'),
    GATEKEEPER_TOKEN: 't',
    GATEKEEPER_PLUGIN_TYPE: 'router',
    GATEKEEPER_PROTOCOL_VERSION: '1',
  };
  try {
    const index = new URL('../index.js', import.meta.url).href;
    const script = `import { serve, ModifierPlugin } from ${JSON.stringify(index)}; serve(new ModifierPlugin());`;
    const mismatch = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH, ...env } });
    let stderr = '';
    mismatch.stderr.on('data', (d) => (stderr += d));
    assert.equal(await within(new Promise((resolve) => mismatch.on('exit', resolve)), 5000, 'exit'), 2);
    assert.match(stderr, /started this program as a `router` plugin, but it is a `modifier` plugin/);

    const refused = spawnPlugin(env);
    assert.equal(await within(refused.exited, 5000, 'exit'), 1);
    assert.match(refused.out.stderr, /could not connect to the gatekeeper socket/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
