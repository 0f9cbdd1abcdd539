// protocol.json as this SDK reads it: the validator against the shared cases of
// plugin-sdk/conformance/schema.json (the same cases the Python SDK runs) and the method lists.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { HOOKS, METHOD_NAMES, MODIFIER_HOOKS } from '../src/plugins.js';
import { bodyHooksOf, methodsOfKind, paramsError, PROTOCOL, resultError } from '../src/protocol.js';

const { cases } = JSON.parse(readFileSync(new URL('../../conformance/schema.json', import.meta.url), 'utf8'));

test('shared validator cases', () => {
  assert.ok(cases.length > 0);
  for (const { method, part, value, error } of cases) {
    const actual = part === 'params' ? paramsError(method, value) : resultError(method, value);
    assert.equal(actual ?? null, error, `${method} ${part} ${JSON.stringify(value)}`);
  }
});

test('method lists come from protocol.json', () => {
  assert.deepEqual([...MODIFIER_HOOKS], ['modify_request', 'modify_response', 'modify_error_response']);
  assert.deepEqual([...bodyHooksOf('modifier')], [...MODIFIER_HOOKS]);
  assert.deepEqual([...bodyHooksOf('router')], []);
  assert.deepEqual([...methodsOfKind('manager')], ['add_upstream', 'remove_upstream', 'add_backend', 'remove_backend', 'apply_batch']);
  assert.deepEqual(Object.keys(HOOKS), PROTOCOL.plugin_types);
  assert.deepEqual([...HOOKS.loadbalancer], ['add_backend', 'remove_backend', 'upstream_metric', 'get_backend']);
  assert.equal(METHOD_NAMES.modify_error_response, 'modifyErrorResponse');
});

test('the package copy of protocol.json is the canonical file', () => {
  const read = (path) => readFileSync(new URL(path, import.meta.url), 'utf8');
  assert.equal(read('../protocol.json'), read('../../protocol.json'));
});
