// The test host is in the installed package: the package is packed with `npm pack` (offline; the
// SDK has no dependencies) or, without npm, copied per package.json's `files`, installed into a
// fresh project's node_modules, and a plugin there is tested with
// `import ... from 'gatekeeper-plugin-sdk/testing'`.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const PACKAGE = fileURLToPath(new URL('../', import.meta.url));

/** Installs the package into `project/node_modules/gatekeeper-plugin-sdk`; says how. */
function install(project) {
  const target = path.join(project, 'node_modules', 'gatekeeper-plugin-sdk');
  mkdirSync(target, { recursive: true });
  const npm = spawnSync('npm', ['--version'], { encoding: 'utf8' });
  if (npm.status === 0) {
    const packed = path.join(project, 'packed');
    mkdirSync(packed);
    execFileSync('npm', ['pack', '--pack-destination', packed, '--ignore-scripts', '--offline', '--silent'], { cwd: PACKAGE, stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    const [tarball] = readdirSync(packed);
    execFileSync('tar', ['-xzf', path.join(packed, tarball), '-C', target, '--strip-components=1'], { timeout: 60_000 });
    return 'npm pack';
  }
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE, 'package.json'), 'utf8'));
  for (const entry of [...manifest.files, 'package.json']) cpSync(path.join(PACKAGE, entry), path.join(target, entry), { recursive: true });
  return 'files';
}

test('the installed package has the test host and the declarations, and not the SDK\'s own tests', { timeout: 60_000 }, async () => {
  const project = mkdtempSync(path.join(tmpdir(), 'gk-node-package-'));
  try {
    install(project);
    const installed = path.join(project, 'node_modules', 'gatekeeper-plugin-sdk');
    for (const file of ['testing.js', 'types/index.d.ts', 'types/protocol.d.ts', 'types/testing.d.ts', 'protocol.json']) {
      assert.ok(existsSync(path.join(installed, file)), `${file} is not in the package`);
    }
    assert.ok(!existsSync(path.join(installed, 'test')), 'the SDK\'s tests are not shipped');
    writeFileSync(path.join(project, 'package.json'), '{"type": "module"}\n');
    writeFileSync(
      path.join(project, 'auth.js'),
      `import { ModifierPlugin, serve } from 'gatekeeper-plugin-sdk';
export class Auth extends ModifierPlugin {
  async modifyRequest(request) {
    const token = request.headers.find(([name]) => name === 'x-token');
    return token ? {} : { response: { status: 401, headers: [] } };
  }
}
serve(new Auth());
`,
    );
    writeFileSync(
      path.join(project, 'auth.test.js'),
      `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, startTestHost } from 'gatekeeper-plugin-sdk/testing';
import { Auth } from './auth.js';

test('401 without a token, through with one', async () => {
  const host = await startTestHost(new Auth());
  try {
    assert.equal((await host.modifyRequest(makeRequest())).response.status, 401);
    assert.deepEqual(await host.modifyRequest(makeRequest({ headers: { 'X-Token': 'a' } })), {});
  } finally {
    await host.stop();
  }
});
`,
    );
    const run = spawnSync(process.execPath, ['--test', 'auth.test.js'], { cwd: project, encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH } });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /# pass 1\n/);
    // The package's exports still refuse what is not exported.
    const refused = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('gatekeeper-plugin-sdk/src/testing/host.js')"], { cwd: project, encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/);
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
});
