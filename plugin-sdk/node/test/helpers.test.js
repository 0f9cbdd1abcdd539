// Unit tests of the pure parts: header helpers, errors, logger, environment, declared hooks,
// and the test harness's matching rules.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  bodyBytes,
  cached,
  codes,
  createLogger,
  EnvError,
  header,
  HOOKS,
  isRpcError,
  LoadBalancerPlugin,
  METHOD_NAMES,
  MetricPlugin,
  ModifierPlugin,
  Plugin,
  pluginTypeOf,
  readEnv,
  removeHeader,
  RouterPlugin,
  RpcError,
  setBodyBytes,
  setHeader,
  UpstreamPlugin,
} from '../index.js';
import { toErrorObject } from '../src/errors.js';
import { createConformancePlugin } from '../conformance-plugin.js';
import { assign, mismatch } from './harness.js';

test('header finds the first value, case-insensitively', () => {
  const headers = [['host', 'a'], ['X-Thing', '1'], ['x-thing', '2']];
  assert.equal(header(headers, 'x-thing'), '1');
  assert.equal(header(headers, 'HOST'), 'a');
  assert.equal(header(headers, 'missing'), undefined);
  assert.equal(header(undefined, 'host'), undefined);
});

test('setHeader replaces every value and appends the lower-case name', () => {
  const headers = [['x-a', '1'], ['host', 'h'], ['X-A', '2']];
  const same = setHeader(headers, 'X-A', 3);
  assert.equal(same, headers);
  assert.deepEqual(headers, [['host', 'h'], ['x-a', '3']]);
  setHeader(headers, 'new', 'v');
  assert.deepEqual(headers, [['host', 'h'], ['x-a', '3'], ['new', 'v']]);
});

test('removeHeader removes every value in place', () => {
  const headers = [['a', '1'], ['b', '2'], ['A', '3']];
  removeHeader(headers, 'a');
  assert.deepEqual(headers, [['b', '2']]);
});

test('RpcError carries code, message and data; toErrorObject maps errors', () => {
  const error = new RpcError(codes.CONFLICT, 'taken', { id: 'x' });
  assert.ok(error instanceof Error);
  assert.ok(isRpcError(error));
  assert.deepEqual(error.toJSON(), { code: -32011, message: 'taken', data: { id: 'x' } });
  assert.deepEqual(toErrorObject(error), { code: -32011, message: 'taken', data: { id: 'x' } });
  assert.deepEqual(toErrorObject(RpcError.unavailable('busy')), { code: -32020, message: 'busy' });
  assert.deepEqual(toErrorObject(RpcError.invalidParams('bad')), { code: -32602, message: 'bad' });
  assert.deepEqual(toErrorObject(new TypeError('boom')), { code: -32603, message: 'boom' });
  assert.deepEqual(toErrorObject('a string'), { code: -32603, message: 'a string' });
  // An RpcError from another copy of the package is recognised by name and integer code.
  const foreign = Object.assign(new Error('other copy'), { name: 'RpcError', code: -32013 });
  assert.deepEqual(toErrorObject(foreign), { code: -32013, message: 'other copy' });
  // A Node system error's string code is not a JSON-RPC code.
  const system = Object.assign(new Error('no file'), { code: 'ENOENT' });
  assert.deepEqual(toErrorObject(system), { code: -32603, message: 'no file' });
});

test('the codes are the protocol table', () => {
  assert.deepEqual(
    { ...codes },
    {
      PARSE_ERROR: -32700,
      INVALID_REQUEST: -32600,
      METHOD_NOT_FOUND: -32601,
      INVALID_PARAMS: -32602,
      INTERNAL_ERROR: -32603,
      UNAUTHORIZED: -32000,
      UNSUPPORTED_VERSION: -32001,
      UNKNOWN_UPSTREAM: -32010,
      CONFLICT: -32011,
      INVALID_VALUE: -32012,
      UNKNOWN_BACKEND: -32013,
      UNAVAILABLE: -32020,
    },
  );
});

test('the logger writes levels at or above its threshold, with stacks', () => {
  const lines = [];
  const log = createLogger({ level: 'warn', write: (text) => lines.push(text) });
  log.info('hidden');
  log.warn('shown');
  log.error('failed', new Error('why'));
  assert.equal(lines.length, 2);
  assert.equal(lines[0], 'WARN gatekeeper-plugin-sdk: shown\n');
  assert.match(lines[1], /^ERROR gatekeeper-plugin-sdk: failed\nError: why\n {4}at /);
});

const FULL_ENV = {
  GATEKEEPER_SOCKET: '/tmp/gk/p.sock',
  GATEKEEPER_TOKEN: 'secret',
  GATEKEEPER_PLUGIN_NAME: 'ids',
  GATEKEEPER_PLUGIN_TYPE: 'modifier',
  GATEKEEPER_PROTOCOL_VERSION: '1',
  GATEKEEPER_MAX_LINE_BYTES: '1024',
  GATEKEEPER_PLUGIN_INSTANCE: '2',
};

test('readEnv reads every variable', () => {
  assert.deepEqual(readEnv(FULL_ENV), {
    socketPath: '/tmp/gk/p.sock',
    token: 'secret',
    name: 'ids',
    pluginType: 'modifier',
    protocolVersion: 1,
    maxLineBytes: 1024,
    instance: 2,
  });
});

test('readEnv defaults the optional variables', () => {
  const { GATEKEEPER_PLUGIN_NAME, GATEKEEPER_MAX_LINE_BYTES, GATEKEEPER_PLUGIN_INSTANCE, ...required } = FULL_ENV;
  const env = readEnv(required);
  assert.equal(env.name, 'modifier');
  assert.equal(env.maxLineBytes, 16 * 1024 * 1024);
  assert.equal(env.instance, 0);
});

test('readEnv says "run me from gatekeeper" when a variable is missing', () => {
  for (const missing of ['GATEKEEPER_SOCKET', 'GATEKEEPER_TOKEN', 'GATEKEEPER_PLUGIN_TYPE', 'GATEKEEPER_PROTOCOL_VERSION']) {
    const env = { ...FULL_ENV, [missing]: '' };
    assert.throws(
      () => readEnv(env),
      (error) => error instanceof EnvError && error.variable === missing && error.message.includes(missing) && error.message.includes('run me from gatekeeper'),
    );
  }
});

test('readEnv names bad values', () => {
  assert.throws(() => readEnv({ ...FULL_ENV, GATEKEEPER_PROTOCOL_VERSION: 'one' }), /GATEKEEPER_PROTOCOL_VERSION.*`one`/);
  assert.throws(() => readEnv({ ...FULL_ENV, GATEKEEPER_PLUGIN_TYPE: 'teapot' }), /teapot/);
  assert.throws(() => readEnv({ ...FULL_ENV, GATEKEEPER_MAX_LINE_BYTES: '-5' }), /GATEKEEPER_MAX_LINE_BYTES/);
});

test('every type class declares exactly the hooks it overrides', () => {
  assert.deepEqual(new ModifierPlugin().hooks(), []);
  assert.deepEqual(new UpstreamPlugin().hooks(), []);
  assert.deepEqual(new RouterPlugin().hooks(), []);
  assert.deepEqual(new LoadBalancerPlugin().hooks(), []);
  assert.deepEqual(new MetricPlugin().hooks(), []);

  class OnlyResponses extends ModifierPlugin {
    async modifyResponse() {}
  }
  assert.deepEqual(new OnlyResponses().hooks(), ['modify_response']);

  class Inherited extends OnlyResponses {
    async modifyErrorResponse() {}
  }
  assert.deepEqual(new Inherited().hooks(), ['modify_response', 'modify_error_response']);

  class Balancer extends LoadBalancerPlugin {
    async getBackend() {}
  }
  assert.deepEqual(new Balancer().hooks(), ['get_backend']);

  class Feedback extends UpstreamPlugin {
    async upstreamMetric() {}
  }
  assert.deepEqual(new Feedback().hooks(), ['upstream_metric']);

  // A method assigned on the instance counts as an override too.
  const assigned = new RouterPlugin();
  assigned.routeRequest = async () => ({ upstream: 'a' });
  assert.deepEqual(assigned.hooks(), ['route_request']);

  class Explicit extends MetricPlugin {
    hooks() {
      return ['request_metric'];
    }
  }
  assert.deepEqual(new Explicit().hooks(), ['request_metric']);
});

test('the conformance plugin declares every hook of its type', () => {
  for (const type of ['modifier', 'router', 'loadbalancer', 'metric']) {
    assert.deepEqual(createConformancePlugin(type).hooks(), [...HOOKS[type]], type);
  }
  assert.deepEqual(createConformancePlugin('upstream').hooks(), []);
});

test('every hook maps to a method of its type class', () => {
  const classes = { upstream: UpstreamPlugin, modifier: ModifierPlugin, router: RouterPlugin, loadbalancer: LoadBalancerPlugin, metric: MetricPlugin };
  for (const [type, hooks] of Object.entries(HOOKS)) {
    for (const hook of hooks) {
      assert.equal(typeof classes[type].prototype[METHOD_NAMES[hook]], 'function', `${type}.${hook}`);
    }
    assert.equal(pluginTypeOf(new classes[type]()), type);
  }
  assert.equal(pluginTypeOf(new Plugin()), undefined);
  assert.equal(pluginTypeOf({}), undefined);
});

test('matching: subsets, $any, null, $contains, exact arrays', () => {
  assert.equal(mismatch({ a: 1 }, { a: 1, b: 2 }), null);
  assert.match(mismatch({ a: 1, c: 3 }, { a: 1 }), /\$\.c: missing/);
  assert.equal(mismatch({ a: '$any' }, { a: null }), null);
  assert.match(mismatch({ a: '$any' }, {}), /missing/);
  assert.equal(mismatch({ a: null }, {}), null);
  assert.equal(mismatch({ a: null }, { a: null }), null);
  assert.notEqual(mismatch({ a: null }, { a: 'x' }), null);
  assert.equal(mismatch({ a: { b: {} } }, { a: { b: { c: 1 } } }), null);
  assert.equal(mismatch({ h: { $contains: [['b', '2'], ['a', '1']] } }, { h: [['a', '1'], ['b', '2'], ['c', '3']] }), null);
  assert.notEqual(mismatch({ h: { $contains: [['a', '1'], ['a', '1']] } }, { h: [['a', '1']] }), null, 'distinct elements');
  assert.equal(mismatch({ h: { $contains: [] } }, { h: [] }), null);
  assert.notEqual(mismatch({ h: { $contains: [] } }, { h: 'x' }), null);
  assert.equal(mismatch([1, [2, 3]], [1, [2, 3]]), null);
  assert.notEqual(mismatch([1, 2], [2, 1]), null);
  assert.notEqual(mismatch([1], [1, 2]), null);
  assert.notEqual(mismatch({ a: 1 }, { a: '1' }), null);
  assert.notEqual(mismatch({ a: {} }, { a: [] }), null);
});

test('unordered matching assigns overlapping patterns', () => {
  // A greedy match would give {id:'$any'} the first message and then fail.
  assert.ok(assign([{ id: '$any' }, { id: 1 }], [{ id: 1 }, { id: 2 }]));
  assert.ok(!assign([{ id: 1 }, { id: 1 }], [{ id: 1 }, { id: 2 }]));
});

test('bodyBytes and setBodyBytes round-trip binary bodies; a text body wins', () => {
  const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const request = { method: 'POST', path: '/' };
  setBodyBytes(request, data);
  assert.equal(typeof request.body_base64, 'string');
  assert.deepEqual(bodyBytes(request), data);
  const response = { status: 200, body: 'text', body_base64: 'aGk=' };
  assert.deepEqual(bodyBytes(response), Buffer.from('text'));
  setBodyBytes(response, '');
  assert.equal('body' in response, false);
  assert.deepEqual(bodyBytes(response), Buffer.alloc(0));
  assert.equal(bodyBytes({ status: 200, body_omitted: true }), undefined);
  assert.throws(() => bodyBytes({ body_base64: 'not base64!' }), /base64/);
});

test('cached adds a cache instruction to a modifyRequest result and keeps the decision', () => {
  const denied = { response: { status: 401, headers: [] } };
  const result = cached(denied, 30000, ['header:authorization', 'method']);
  assert.deepEqual(result, { ...denied, cache: { ttl_ms: 30000, key: ['header:authorization', 'method'] } });
  assert.equal(denied.cache, undefined);
  assert.throws(() => cached({}, 1000, 'header:authorization'), TypeError);
});
