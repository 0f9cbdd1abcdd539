// The shared test-host cases (plugin-sdk/conformance/testhost.json: builders, cookies, query
// parameters, typed config values), every one of them, and the test host itself
// (gatekeeper-plugin-sdk/testing): lifecycle, result checks, manager calls, startup hints.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  codes,
  configValue,
  cookies,
  LoadBalancerPlugin,
  MetricPlugin,
  ModifierPlugin,
  queryParams,
  RouterPlugin,
  RpcError,
  silentLogger,
  UpstreamPlugin,
} from 'gatekeeper-plugin-sdk';
import { makeRequest, makeResponse, ProtocolViolation, startTestHost } from 'gatekeeper-plugin-sdk/testing';

import { createConformancePlugin } from '../conformance-plugin.js';

const cases = JSON.parse(readFileSync(new URL('../../conformance/testhost.json', import.meta.url), 'utf8'));
const T = { timeout: 10_000 };
/** The host's options in these tests: SDK log lines only in `host.log`. */
const QUIET = { logger: silentLogger };

/**
 * `actual` has exactly the fields of `expected`: equal values, where a `null` expected value
 * also matches an absent field.
 */
function assertFields(actual, expected, name) {
  for (const [key, value] of Object.entries(expected)) {
    if (value === null) assert.ok(actual[key] === undefined || actual[key] === null, `${name}: ${key} = ${JSON.stringify(actual[key])}`);
    else assert.deepEqual(actual[key], value, `${name}: ${key}`);
  }
  for (const key of Object.keys(actual)) assert.ok(Object.hasOwn(expected, key), `${name}: unexpected field ${key}`);
}

test('testhost.json has cases of every kind', () => {
  for (const kind of ['make_request', 'make_response', 'cookies', 'query', 'typed_config']) {
    assert.ok(Array.isArray(cases[kind]) && cases[kind].length > 0, kind);
  }
});

for (const c of cases.make_request) {
  test(`makeRequest: ${c.name}`, () => assertFields(makeRequest(c.args), c.expect, c.name));
}

for (const c of cases.make_response) {
  test(`makeResponse: ${c.name}`, () => assertFields(makeResponse(c.args), c.expect, c.name));
}

for (const c of cases.cookies) {
  test(`cookies: ${c.name}`, () => {
    assert.deepEqual(cookies(c.headers), c.expect);
    assert.deepEqual(cookies({ method: 'GET', path: '/', headers: c.headers }), c.expect);
  });
}

for (const c of cases.query) {
  test(`queryParams: ${c.name}`, () => {
    assert.deepEqual(queryParams(c.query), c.expect);
    assert.deepEqual(queryParams(makeRequest({ query: c.query ?? undefined })), c.expect);
  });
}

for (const c of cases.typed_config) {
  test(`configValue: ${c.name}`, () => {
    const read = () => configValue(c.config, c.key, c.type, c.default);
    if (Object.hasOwn(c, 'error')) {
      assert.throws(read, (error) => error instanceof RpcError && error.code === codes.INVALID_PARAMS && error.message.includes(c.error));
    } else {
      assert.deepEqual(read(), c.expect);
    }
  });
}

test('configValue refuses an unknown type', () => {
  assert.throws(() => configValue({ a: 1 }, 'a', 'integer'), /unknown config type `integer`/);
});

// ---- the test host ----

class Greeter extends ModifierPlugin {
  seen = [];

  async configure(config) {
    this.seen.push('configure');
    this.greeting = configValue(config, 'greeting', 'string', 'hello');
    this.limit = configValue(config, 'limit', 'int', 10);
  }

  async start() {
    this.seen.push('start');
  }

  async heartbeat() {
    this.seen.push('heartbeat');
  }

  async stop() {
    this.seen.push('stop');
  }

  async modifyRequest(request) {
    if (cookies(request).session === undefined) {
      return { response: { status: 401, headers: [['content-type', 'text/plain']], body: 'log in first' } };
    }
    request.headers.push(['x-greeting', this.greeting]);
    return { request };
  }
}

test('host: the real lifecycle, configure with the config, results as gatekeeper receives them', T, async () => {
  const plugin = new Greeter();
  const host = await startTestHost(plugin, { config: { greeting: 'hi', limit: '3' }, ...QUIET });
  try {
    assert.equal(host.type, 'modifier');
    assert.deepEqual(host.hooks, ['modify_request']);
    assert.deepEqual(host.handshake.hooks, ['modify_request']);
    assert.deepEqual([plugin.greeting, plugin.limit], ['hi', 3]);
    const denied = await host.modifyRequest(makeRequest({ path: '/x' }));
    assert.deepEqual(denied, { response: { status: 401, headers: [['content-type', 'text/plain']], body: 'log in first' } });
    // A returned request travels as a patch of what changed.
    const allowed = await host.modifyRequest(makeRequest({ path: '/x', cookies: { session: 'abc' } }));
    assert.deepEqual(allowed, { patch: { set_headers: { 'x-greeting': 'hi' } } });
    await host.heartbeat();
  } finally {
    await host.stop();
  }
  assert.deepEqual(plugin.seen, ['configure', 'start', 'heartbeat', 'stop']);
  await host.stop(); // twice is fine
});

test('host: a result the protocol cannot carry is refused by the SDK, answered -32603 and logged', T, async () => {
  class BadRouter extends RouterPlugin {
    async routeRequest() {
      return { upstream: 42 };
    }
  }
  const host = await startTestHost(new BadRouter(), QUIET);
  try {
    await assert.rejects(
      host.routeRequest(makeRequest()),
      (error) =>
        error instanceof RpcError &&
        error.code === codes.INTERNAL_ERROR &&
        /routeRequest\(\) returned a result the protocol cannot carry: route_request result: `upstream` must be a string or null/.test(error.message),
    );
    assert.deepEqual(
      host.log.filter((line) => line.level === 'error').map((line) => line.message),
      ['routeRequest() returned a result the protocol cannot carry: route_request result: `upstream` must be a string or null; answering `route_request` with an internal error instead of sending it'],
    );
  } finally {
    await host.stop();
  }
});

test('host: a hook that was not declared (a misspelled method) is a ProtocolViolation; params gatekeeper never sends are a TypeError', T, async () => {
  class Misspelled extends ModifierPlugin {
    async modifyRequets(request) {
      return { request };
    }

    async modifyResponse() {}
  }
  const host = await startTestHost(new Misspelled(), QUIET);
  try {
    await assert.rejects(
      host.modifyRequest(makeRequest()),
      (error) => error instanceof ProtocolViolation && /did not declare `modify_request`.*check its spelling/.test(error.message),
    );
    await assert.rejects(host.call('route_request', { request: makeRequest() }), /never calls `route_request` on a modifier plugin/);
    await assert.rejects(host.modifyResponse({ method: 'GET' }, makeResponse()), (error) => error instanceof TypeError && /`request.path` is missing/.test(error.message));
    assert.ok(host.log.some((line) => line.level === 'warn' && line.message.includes('`modifyRequets`') && line.message.includes('did you mean `modifyRequest`')));
  } finally {
    await host.stop();
  }
});

test('host: configure refused: startTestHost rejects with the plugin\'s code and message', T, async () => {
  await assert.rejects(
    startTestHost(new Greeter(), { config: { limit: 'many' }, ...QUIET }),
    (error) => error instanceof RpcError && error.code === codes.INVALID_PARAMS && error.message === 'config `limit` must be an integer, not `many`',
  );
});

test('host: an upstream plugin\'s manager calls and config reports are recorded and answered', T, async () => {
  class Registry extends UpstreamPlugin {
    async startUpstreams(manager) {
      await manager.addUpstream({ id: 'api', prefixes: ['api'] });
      await manager.addBackend('api', { id: '0', address: 'http://127.0.0.1:9' });
      await this.reportConfigError('bad line 3');
      await this.reportConfigOk();
    }
  }
  const host = await startTestHost(new Registry(), QUIET);
  try {
    assert.deepEqual(host.hooks, []);
    assert.deepEqual(host.managerCalls, [
      { method: 'add_upstream', params: { upstream: { id: 'api', prefixes: ['api'] } }, result: {} },
      { method: 'add_backend', params: { upstream_id: 'api', backend: { id: '0', address: 'http://127.0.0.1:9' } }, result: {} },
    ]);
    assert.deepEqual(host.configStatus, ['bad line 3', null]);
  } finally {
    await host.stop();
  }
  // A refusal from `answer` fails `start` with the proxy's code, as gatekeeper's would.
  const refuse = (method) => {
    if (method === 'add_backend') throw new RpcError(codes.INVALID_VALUE, 'bad address');
  };
  await assert.rejects(
    startTestHost(new Registry(), { answer: refuse, ...QUIET }),
    (error) => error instanceof RpcError && error.code === codes.INVALID_VALUE && error.message === 'bad address',
  );
});

test('host: the conformance plugin of every type starts without hints and stops', T, async () => {
  for (const type of ['upstream', 'modifier', 'router', 'loadbalancer', 'metric']) {
    const config = type === 'upstream' ? { upstream_id: 'c', backends: 'http://127.0.0.1:9' } : {};
    const host = await startTestHost(createConformancePlugin(type), { type, config, ...QUIET });
    try {
      assert.deepEqual(host.log.filter((line) => line.level === 'warn'), [], type);
      assert.deepEqual(host.warnings, [], type);
    } finally {
      await host.stop();
    }
  }
});

test('host: a plugin served as another type fails to start', T, async () => {
  await assert.rejects(startTestHost(new Greeter(), { type: 'router', ...QUIET }), /started this program as a `router` plugin, but it is a `modifier` plugin/);
  await assert.rejects(startTestHost({}, QUIET), /needs an instance of/);
});

// ---- startup hints (the SDK's warnings on stderr) ----

/** The SDK's warnings when `plugin` starts. */
async function hintsOf(plugin) {
  const host = await startTestHost(plugin, QUIET);
  await host.stop();
  return host.log.filter((line) => line.level === 'warn').map((line) => line.message);
}

test('hints: a misspelled hook, a snake_case hook, another type\'s hook, no hooks at all', T, async () => {
  class Snake extends ModifierPlugin {
    async modify_requets() {}
    async modifyResponse() {}
  }
  assert.deepEqual(await hintsOf(new Snake()), ['`modify_requets` is not a method the SDK calls: did you mean `modifyRequest`? (as written it is never called)']);

  class Wire extends RouterPlugin {
    async route_request() {}
  }
  const wire = await hintsOf(new Wire());
  assert.ok(wire.some((hint) => hint === '`route_request` is the wire name: the SDK calls `routeRequest`, so `route_request` is never called'), wire.join('\n'));
  assert.ok(wire.some((hint) => /this router plugin declares no hooks, so gatekeeper never calls it/.test(hint)), wire.join('\n'));

  class Confused extends LoadBalancerPlugin {
    async routeRequest() {}
    async getBackend() {}
  }
  assert.deepEqual(await hintsOf(new Confused()), ['`routeRequest` is a hook of router plugins, but this is a loadbalancer plugin: it is never called']);

  class StartUpstream extends UpstreamPlugin {
    async startUpstream() {}
  }
  assert.deepEqual(await hintsOf(new StartUpstream()), ['`startUpstream` is not a method the SDK calls: did you mean `startUpstreams`? (as written it is never called)']);

  class Nothing extends MetricPlugin {}
  assert.deepEqual(await hintsOf(new Nothing()), [
    'this metric plugin declares no hooks, so gatekeeper never calls it: override one of eventMetric, profilingMetric, pluginMetric, requestMetric, upstreamMetric (or return their wire names from hooks())',
  ]);

  // Helpers with other names, fields and getters are not hints.
  class Fine extends ModifierPlugin {
    limit = 3;
    stats() {}
    stopTimer() {}
    get modifyRequestCount() {
      throw new Error('getters are not called');
    }
    async modifyRequest() {}
  }
  assert.deepEqual(await hintsOf(new Fine()), []);
});
