// A real `keystead serve` for the tests that need the key directory: a temporary data dir, a
// tenant, a service key limited to the `directory` operation, and the vendor's backend calls
// (create a user slot, mint tokens) that need that key.
//
// The binary: $KEYSTEAD_BIN, else <target dir>/debug/keystead (CARGO_TARGET_DIR or the
// workspace's target/). If it is missing, it is built with
// `cargo build -p keystead-server --locked` (minutes on a cold cache).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

function binary() {
  if (process.env.KEYSTEAD_BIN) return process.env.KEYSTEAD_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
  const bin = join(target, 'debug', 'keystead');
  if (!existsSync(bin)) {
    console.log(`keystead.mjs: ${bin} is missing; running cargo build -p keystead-server --locked`);
    try {
      execFileSync('cargo', ['build', '-p', 'keystead-server', '--locked'], { cwd: root, stdio: 'inherit' });
    } catch (e) {
      throw new Error(
        `could not build keystead (${e.message}); build it with \`cargo build -p keystead-server --locked\` ` +
          'or set KEYSTEAD_BIN to a keystead binary',
      );
    }
  }
  return bin;
}

async function freePort() {
  const s = createServer();
  await new Promise((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address();
  await new Promise((ok) => s.close(ok));
  return port;
}

// The environment without KEYSTEAD_* variables: the server's settings come from here alone.
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYSTEAD_')) env[k] = v;
  return env;
}

/**
 * Starts `keystead serve` with tenant `tenant` and a directory service key. Resolves to
 * `{ url, tenant, createUser(userId), token(userId, kind), close() }`.
 */
export async function startKeystead({ tenant = 'acme' } = {}) {
  const bin = binary();
  const dir = mkdtempSync(join(tmpdir(), 'keystead-e2e-'));
  const data = join(dir, 'data');
  const env = cleanEnv();
  const cli = (...args) => execFileSync(bin, ['--data-dir', data, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  cli('tenant', 'create', tenant);
  const serviceKey = cli('service-key', 'create', 'vendor', '--tenant', tenant, '--ops', 'directory')
    .split('\n')
    .find((l) => l.startsWith('ks_'));
  if (!serviceKey) throw new Error('keystead service-key create printed no key');

  const [port, adminPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  let log = '';
  const child = spawn(
    bin,
    ['--data-dir', data, 'serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`],
    { env: { ...env, KEYSTEAD_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (chunk) => {
    log = (log + chunk).slice(-20000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`keystead serve exited during startup (${JSON.stringify(exited)}):\n${log}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`keystead serve did not answer /health within 30 s:\n${log}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }

  const vendor = async (path, body) => {
    const res = await fetch(`${url}/v1/e2e/tenants/${tenant}${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${serviceKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };

  return {
    url,
    tenant,
    /** The vendor creates the slot a user enrolls into. */
    createUser: (userId) => vendor('/users', { user_id: userId }),
    /** The vendor mints an `enrollment` or `reauthentication` token for a user. */
    token: async (userId, kind) => (await vendor(`/users/${encodeURIComponent(userId)}/tokens`, { kind })).token,
    log: () => log,
    async close() {
      if (!exited) {
        const done = new Promise((ok) => child.once('exit', ok));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await done;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
