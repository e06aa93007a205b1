// The published artefact: `npm pack`, install the tarball into an empty app, and use it from
// there, so a file missing from package.json's `files` fails here.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const npmDir = fileURLToPath(new URL('..', import.meta.url));

test('the packed tarball installs and works in a fresh app', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keystead-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--pack-destination', dir, '--json'], { cwd: npmDir, encoding: 'utf8' });
    const [{ filename, files }] = JSON.parse(out);
    assert.ok(files.some((f) => f.path === 'pkg/web/keystead_wasm_bg.wasm'));
    assert.ok(!files.some((f) => f.path.startsWith('test/') || f.path.startsWith('bench/')));
    const app = join(dir, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true, "type": "module" }\n');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(dir, filename)], { cwd: app, stdio: 'pipe' });
    writeFileSync(
      join(app, 'main.js'),
      `import { init, Identity, encryptBlob, decryptBlob } from "keystead";
await init();
const me = Identity.generate("device/app");
const { blob, accessBlock } = await encryptBlob(new Blob(["packed"]), [me], me);
const plain = await decryptBlob(blob, me, { accessBlock, author: me.signingPublicKey });
console.log(await plain.text());
`,
    );
    assert.equal(execFileSync('node', ['main.js'], { cwd: app, encoding: 'utf8' }).trim(), 'packed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
