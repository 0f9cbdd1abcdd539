// Runs every case of plugin-sdk/conformance/wire.json against the conformance plugin, in
// memory: the plugin is served with `run` on one end of a Unix socket pair, this test plays the
// proxy on the other end, step by step (see plugin-sdk/conformance/README.md).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { createConformancePlugin } from '../conformance-plugin.js';
import { assign, mismatch, session, within } from './harness.js';

const cases = JSON.parse(readFileSync(new URL('../../conformance/wire.json', import.meta.url), 'utf8'));

/** How long a whole case may take. */
const CASE_TIMEOUT_MS = 10_000;
/** How long the serve call has to return after the connection ends. */
const SERVE_RETURNS_MS = 2000;

test('wire.json has cases', () => {
  assert.ok(Array.isArray(cases) && cases.length > 0);
});

for (const wireCase of cases) {
  test(`wire: ${wireCase.name}`, { timeout: CASE_TIMEOUT_MS }, async () => {
    const plugin = createConformancePlugin(wireCase.plugin_type);
    const { proxy, done, cleanup } = await session(plugin, { pluginType: wireCase.plugin_type, name: 'conformance' });
    try {
      let last;
      for (const [index, step] of wireCase.steps.entries()) {
        const where = `step ${index} ${JSON.stringify(step).slice(0, 120)}`;
        if ('expect' in step) {
          last = await proxy.next();
          const why = mismatch(step.expect, last);
          assert.equal(why, null, `${where}: got ${JSON.stringify(last)}: ${why}`);
        } else if ('reply' in step) {
          assert.ok(last && 'method' in last && last.id !== undefined, `${where}: the last message expected is not a request`);
          proxy.send({ jsonrpc: '2.0', id: last.id, ...step.reply });
        } else if ('send' in step) {
          proxy.send(step.send);
        } else if ('expect_unordered' in step) {
          const received = [];
          for (let i = 0; i < step.expect_unordered.length; i++) received.push(await proxy.next());
          assert.ok(
            assign(step.expect_unordered, received),
            `${where}: received ${JSON.stringify(received)}, which does not match ${JSON.stringify(step.expect_unordered)} in any order`,
          );
        } else if ('expect_closed' in step) {
          await proxy.closedByPlugin();
          await within(done, SERVE_RETURNS_MS, `${where}: run() returning success`);
        } else if ('close' in step) {
          proxy.close();
          await within(done, SERVE_RETURNS_MS, `${where}: run() returning success`);
        } else {
          assert.fail(`${where}: unknown step`);
        }
      }
    } finally {
      await cleanup();
    }
  });
}
