// The apply_batch builders and the refused changes of a refused batch's error.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { batch, RpcError } from '../index.js';
import { paramsError } from '../src/protocol.js';

test('the builders make the changes the schema accepts', () => {
  const changes = [
    batch.addUpstream({ id: 'api', prefixes: ['api'] }),
    batch.addBackend('api', { id: 'a', address: 'http://127.0.0.1:1' }),
    batch.removeBackend('api', 'a'),
    batch.removeUpstream('api'),
  ];
  assert.deepEqual(changes.map((c) => Object.keys(c)[0]), ['add_upstream', 'add_backend', 'remove_backend', 'remove_upstream']);
  assert.equal(paramsError('apply_batch', { changes, replace: false }), undefined);
  assert.notEqual(paramsError('apply_batch', { changes: [{ ...changes[0], ...changes[3] }] }), undefined);
});

test('refused reads the error data', () => {
  const error = new RpcError(-32010, '1 of 2 changes refused', {
    total: 2,
    refused: [{ index: 1, code: -32010, message: 'unknown upstream `x`' }],
  });
  assert.deepEqual(batch.refused(error), [{ index: 1, code: -32010, message: 'unknown upstream `x`' }]);
  assert.deepEqual(batch.refused(new RpcError(-32602, 'change 0: bad')), []);
});
