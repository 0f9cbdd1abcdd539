// The patches the SDK computes between the request (or response) a hook got and the one it
// returned, and when it sends the whole value instead.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { patch } from '../index.js';
import { asPatch, requestPatch, responsePatch } from '../src/patch.js';

const REQUEST = {
  listener: 'http',
  remote_addr: '127.0.0.1:1',
  method: 'GET',
  host: 'h',
  path: '/a',
  prefixless_path: '/a',
  headers: [['a', '1'], ['b', '2'], ['b', '3'], ['drop', 'x']],
  context: { gone: 1 },
};

test('only what changed is sent', () => {
  const returned = structuredClone(REQUEST);
  returned.headers = [['a', 'changed'], ['b', '2'], ['b', '3'], ['new', 'n']];
  returned.context = { k: 1 };
  returned.query = 'q=1';
  assert.deepEqual(requestPatch(REQUEST, returned), {
    set_headers: { a: 'changed', new: 'n' },
    remove_headers: ['drop'],
    query: 'q=1',
    context: { k: 1, gone: null },
  });
  assert.deepEqual(requestPatch(REQUEST, structuredClone(REQUEST)), {});
});

test('what a patch cannot carry sends the whole request', () => {
  for (const change of [
    { body_base64: 'bmV3' },
    { host: 'other' },
    { context: { gone: null } },
    { headers: [['bad name', 'x']] },
    { headers: [['a', 'line\nbreak']] },
  ]) {
    const returned = { ...structuredClone(REQUEST), ...change };
    assert.equal(requestPatch(REQUEST, returned), undefined, JSON.stringify(change));
    const result = { request: returned, cache: { ttl_ms: 1, key: ['path'] } };
    assert.equal(asPatch('request', REQUEST, result), result);
  }
});

test('a result keeps its other members, and an explicit patch is sent as it is', () => {
  const returned = structuredClone(REQUEST);
  returned.headers.push(['x', '1']);
  const cache = { ttl_ms: 1, key: ['path'] };
  assert.deepEqual(asPatch('request', REQUEST, { request: returned, cache }), {
    patch: { set_headers: { x: '1' } },
    cache,
  });
  assert.deepEqual(asPatch('request', REQUEST, { request: REQUEST }), {});
  const explicit = patch({ query: null });
  assert.deepEqual(explicit, { patch: { query: null } });
  assert.equal(asPatch('request', REQUEST, explicit), explicit);
});

test('a response patch is status and headers; a body change is not a patch', () => {
  const sent = { status: 200, headers: [['server', 's']] };
  assert.deepEqual(responsePatch(sent, { status: 203, headers: [] }), {
    remove_headers: ['server'],
    status: 203,
  });
  assert.equal(responsePatch(sent, { ...sent, body: 'new' }), undefined);
  assert.equal(responsePatch(sent, { ...sent, status: 1000 }), undefined);
});
