// serve() in a module that a test imports does nothing (without GATEKEEPER_SOCKET); run by hand,
// the same module still says "run me from gatekeeper" and exits 2. Real node processes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const INDEX = new URL('../index.js', import.meta.url).href;
const TESTING = new URL('../testing.js', import.meta.url).href;

/** Runs `node args…` with only PATH set; resolves to its exit code and output (killed after 10 s). */
function node(args, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    child.stdout.on('data', (d) => (out.stdout += d));
    child.stderr.on('data', (d) => (out.stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, ...out });
    });
  });
}

test('serve: imported by a test it does nothing; run by hand it exits 2 with "run me from gatekeeper"', { timeout: 20_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gk-node-import-'));
  try {
    // The docs' example, as a plugin author writes it: serve() at the end of the module.
    writeFileSync(
      path.join(dir, 'hello.mjs'),
      `import { ModifierPlugin, serve, setHeader } from ${JSON.stringify(INDEX)};
export class Hello extends ModifierPlugin {
  async modifyRequest(request) {
    setHeader(request.headers, 'x-hello', 'from node');
    return { request };
  }
}
export const served = serve(new Hello());
`,
    );
    writeFileSync(
      path.join(dir, 'hello.test.mjs'),
      `import { makeRequest, startTestHost } from ${JSON.stringify(TESTING)};
import { Hello, served } from './hello.mjs';
console.log('serve() resolved to', await served);
const host = await startTestHost(new Hello());
console.log(JSON.stringify(await host.modifyRequest(makeRequest())));
await host.stop();
`,
    );
    const imported = await node(['hello.test.mjs'], dir);
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal(imported.stderr, '');
    assert.equal(imported.stdout, 'serve() resolved to null\n{"patch":{"set_headers":{"x-hello":"from node"}}}\n');

    const byHand = await node(['hello.mjs'], dir);
    assert.equal(byHand.code, 2);
    assert.match(byHand.stderr, /GATEKEEPER_SOCKET is not set.*run me from gatekeeper/);
    // Through a symlink to it, too.
    symlinkSync(path.join(dir, 'hello.mjs'), path.join(dir, 'link.mjs'));
    const linked = await node(['link.mjs'], dir);
    assert.equal(linked.code, 2);
    assert.match(linked.stderr, /run me from gatekeeper/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
