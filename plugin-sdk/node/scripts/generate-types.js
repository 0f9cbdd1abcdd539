#!/usr/bin/env node
/**
 * Generates the package's TypeScript declarations from the protocol schema:
 *
 * - `types/protocol.d.ts`: one type per `$defs` entry of `protocol.json` (itself generated from
 *   crates/rpc's table), and `Methods` (params and result of every method);
 * - `types/index.d.ts`: the SDK's public API (`gatekeeper-plugin-sdk`); each plugin class's hook
 *   methods, their arguments and results come from the protocol's method table;
 * - `types/testing.d.ts`: the test host (`gatekeeper-plugin-sdk/testing`).
 *
 * The schema-to-TypeScript translation is in `scripts/types/schema.js`, the API's declarations
 * in `scripts/types/api.js`. Run `node scripts/generate-types.js` after protocol.json or the API
 * changes; the files are committed, and `test/types.test.js` fails when they are stale.
 * `--check` only compares.
 *
 * @module
 */

import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { HOOKS } from '../src/plugins.js';
import { indexDeclarations, testingDeclarations } from './types/api.js';
import { doc, HEADER, key, tsType, union } from './types/schema.js';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** `types/protocol.d.ts`. */
function protocolDeclarations(protocol) {
  let out = `${HEADER}// The protocol's data types: one per \`$defs\` entry of protocol.json (docs/protocol.md).\n\n`;
  for (const [name, schema] of Object.entries(protocol.$defs)) {
    const type = tsType(schema, (other) => other, 0);
    const isInterface = schema.type === 'object' && schema.properties !== undefined && type.startsWith('{');
    out += doc(schema.description, 0);
    out += isInterface ? `export interface ${name} ${type}\n\n` : `export type ${name} = ${type};\n\n`;
  }
  out += '/** Every method of the protocol: its params and its result. */\nexport interface Methods {\n';
  for (const method of protocol.methods) {
    out += doc(method.description, 1);
    out += `  ${key(method.name)}: { params: ${tsType(method.params, (n) => n)}; result: ${tsType(method.result, (n) => n)} };\n`;
  }
  out += '}\n\n/** A method\'s name. */\nexport type MethodName = keyof Methods;\n\n';
  out += '/** The hooks each plugin type may declare. */\nexport interface HooksByType {\n';
  for (const [type, hooks] of Object.entries(HOOKS)) out += `  ${type}: ${hooks.length === 0 ? 'never' : union(hooks.map((h) => JSON.stringify(h)))};\n`;
  out += '}\n';
  return out;
}

/**
 * The declaration files, by path relative to the package root.
 *
 * @param {object} [protocol] default: the package's protocol.json
 * @returns {Record<string, string>}
 */
export function generate(protocol = JSON.parse(readFileSync(path.join(ROOT, 'protocol.json'), 'utf8'))) {
  return {
    'types/protocol.d.ts': protocolDeclarations(protocol),
    'types/index.d.ts': indexDeclarations(protocol),
    'types/testing.d.ts': testingDeclarations(protocol),
  };
}

function main() {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [file, text] of Object.entries(generate())) {
    const target = path.join(ROOT, file);
    let current;
    try {
      current = readFileSync(target, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === text) continue;
    if (check) {
      process.stderr.write(`${file} is stale: run node scripts/generate-types.js\n`);
      stale += 1;
    } else {
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, text);
      process.stdout.write(`wrote ${file}\n`);
    }
  }
  process.exitCode = stale > 0 ? 1 : 0;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) main();
