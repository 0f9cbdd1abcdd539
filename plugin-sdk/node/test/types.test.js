// The TypeScript declarations (types/*.d.ts) are generated from protocol.json by
// scripts/generate-types.js: regenerated here in memory, they must equal the committed files, and
// they must declare every export of the package's entry points.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import * as sdk from 'gatekeeper-plugin-sdk';
import * as testing from 'gatekeeper-plugin-sdk/testing';

import { generate } from '../scripts/generate-types.js';
import { HOOK_PARAMS, HOOKS } from '../src/plugins.js';
import { METHODS, PROTOCOL } from '../src/protocol.js';

const ROOT = new URL('../', import.meta.url);

test('the committed declarations are what the generator writes (else: node scripts/generate-types.js)', () => {
  const files = generate();
  assert.deepEqual(Object.keys(files).sort(), ['types/index.d.ts', 'types/protocol.d.ts', 'types/testing.d.ts']);
  for (const [file, text] of Object.entries(files)) {
    assert.equal(readFileSync(new URL(file, ROOT), 'utf8'), text, `${file} is stale: run node plugin-sdk/node/scripts/generate-types.js`);
  }
});

test('a change of the schema changes the declarations', () => {
  const changed = structuredClone(PROTOCOL);
  changed.$defs.Backend.properties.zone = { type: ['string', 'null'], description: 'A new field.' };
  assert.match(generate(changed)['types/protocol.d.ts'], /\/\*\* A new field\. \*\/\n {2}zone\?: string \| null;/);
});

test('every protocol $def is a declared type, and every export of the entry points is declared', () => {
  const protocol = readFileSync(new URL('types/protocol.d.ts', ROOT), 'utf8');
  for (const name of Object.keys(PROTOCOL.$defs)) assert.match(protocol, new RegExp(`^export (interface|type) ${name}\\b`, 'm'), name);
  const declared = (file) => {
    const text = readFileSync(new URL(file, ROOT), 'utf8');
    return new Set([...text.matchAll(/^export (?:declare )?(?:const|function|class|namespace|interface|type) (\w+)/gm)].map((m) => m[1]));
  };
  const index = declared('types/index.d.ts');
  for (const name of Object.keys(sdk)) assert.ok(index.has(name), `types/index.d.ts does not declare ${name}`);
  const host = declared('types/testing.d.ts');
  for (const name of Object.keys(testing)) assert.ok(host.has(name), `types/testing.d.ts does not declare ${name}`);
});

test('HOOK_PARAMS names each hook\'s required params, in argument order', () => {
  const hooks = new Set(Object.values(HOOKS).flat());
  assert.deepEqual(Object.keys(HOOK_PARAMS).sort(), [...hooks].sort());
  for (const [hook, params] of Object.entries(HOOK_PARAMS)) {
    const schema = PROTOCOL.$defs[METHODS[hook].params.$ref.replace('#/$defs/', '')];
    assert.deepEqual([...params].sort(), [...schema.required].sort(), hook);
  }
});
