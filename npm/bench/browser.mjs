// Chromium throughput of encryptStream/decryptStream (64 MiB, 1 MiB chunks) in a page, for
// the release build (pkg/) and, if present, the +simd128 build (pkg-simd/). Debian's
// Chromium through playwright-core, served by the tests' local server.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer } from '../test/server.mjs';

const native = Number(process.env.NATIVE_MBPS ?? 1320);
const server = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
try {
  const version = browser.version();
  for (const [name, dir] of [['release', 'pkg'], ['simd', 'pkg-simd']]) {
    if (!existsSync(new URL(`../${dir}/web/keystead_wasm.js`, import.meta.url))) {
      console.log(`${name}: not built, skipped`);
      continue;
    }
    const page = await browser.newPage();
    await page.goto(`${server.url}/bench/bench.html`);
    await page.waitForFunction(() => window.benchReady === true);
    const r = await page.evaluate(([d, runs]) => window.runBench(d, runs), [dir, Number(process.env.RUNS ?? 5)]);
    const f = (x) => `${x.best.toFixed(0)} MB/s best, ${x.median.toFixed(0)} median (${(x.median / native * 100).toFixed(0)} % of native)`;
    console.log(`chromium ${version} ${name}: encrypt ${f(r.encrypt)}; decrypt ${f(r.decrypt)}`);
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
}
