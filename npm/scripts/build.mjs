#!/usr/bin/env node
// Builds the wasm SDK into npm/pkg/{web,node} following a profile of /wasm-pack.toml:
// cargo build → wasm-bindgen per target → wasm-opt (npm `binaryen`) → gzip size check.
//
//   node scripts/build.mjs [--profile release|simd|dev] [--out <dir>] [--no-size-check]
//
// --out puts the targets under another directory (the benchmarks build the simd profile
// into pkg-simd/ beside the release build). The size check fails the build when the
// gzipped .wasm exceeds the profile's max_gzip_bytes.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { parse } from 'smol-toml';

const npmDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(npmDir, '..');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const profileName = arg('--profile', 'release');
const sizeCheck = !process.argv.includes('--no-size-check');

const config = parse(readFileSync(join(root, 'wasm-pack.toml'), 'utf8'));
const profile = config.profile?.[profileName];
if (!profile) {
  console.error(`wasm-pack.toml has no [profile.${profileName}]`);
  process.exit(2);
}
const outRoot = resolve(root, arg('--out', config.package.out_dir));

function run(cmd, args, env = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', cwd: root, env: { ...process.env, ...env } });
}

// The CLI must match the crate version exactly, or the generated glue does not fit.
const want = config.tools.wasm_bindgen;
let have = '';
try {
  have = execFileSync('wasm-bindgen', ['--version'], { encoding: 'utf8' }).trim();
} catch {
  // reported below
}
if (have !== `wasm-bindgen ${want}`) {
  console.error(
    `need wasm-bindgen ${want} on PATH (found: ${have || 'none'}); ` +
      `install it with: cargo install wasm-bindgen-cli --locked --version ${want}`,
  );
  process.exit(2);
}

// 1. cargo
const env = { ...(profile.env ?? {}) };
if (profile.rustflags.length > 0) {
  // Target-specific, so host build scripts and proc macros keep their own flags and cache.
  env.CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS = profile.rustflags.join(' ');
}
run(
  'cargo',
  [
    'build', '-p', config.package.crate, '--target', 'wasm32-unknown-unknown', '--profile', profile.cargo_profile,
    ...(profile.cargo_config ?? []).flatMap((c) => ['--config', c]),
  ],
  env,
);
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
const profileDir = profile.cargo_profile === 'dev' ? 'debug' : profile.cargo_profile;
const wasmIn = join(targetDir, 'wasm32-unknown-unknown', profileDir, `${config.package.wasm_name}.wasm`);

// 2. wasm-bindgen and 3. wasm-opt, per target
const wasmOpt = join(npmDir, 'node_modules', '.bin', 'wasm-opt');
if (profile.wasm_opt.length > 0 && !existsSync(wasmOpt)) {
  console.error(`missing ${wasmOpt}: run \`npm ci\` in npm/ (binaryen comes from npm, not the system)`);
  process.exit(2);
}
const sizes = {};
for (const [name, target] of Object.entries(config.targets)) {
  const out = join(outRoot, target.dir);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  run('wasm-bindgen', [
    '--target', target.wasm_bindgen_target,
    '--out-dir', out,
    '--out-name', config.package.wasm_name,
    '--no-typescript',
    wasmIn,
  ]);
  if (target.wasm_bindgen_target === 'nodejs') {
    // The nodejs target is CommonJS; the package itself is "type": "module".
    writeFileSync(join(out, 'package.json'), '{ "type": "commonjs" }\n');
  }
  const wasm = join(out, `${config.package.wasm_name}_bg.wasm`);
  if (profile.wasm_opt.length > 0) {
    run(wasmOpt, [...profile.wasm_opt, wasm, '-o', wasm]);
  }
  const bytes = readFileSync(wasm);
  sizes[name] = { raw: statSync(wasm).size, gzip: gzipSync(bytes, { level: 9 }).length, path: wasm };
}

// The package ships the repository's license texts.
for (const f of ['LICENSE-APACHE', 'LICENSE-MIT']) copyFileSync(join(root, f), join(npmDir, f));

// 4. size check
let failed = false;
for (const [name, s] of Object.entries(sizes)) {
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(
    `size ${name}: ${s.raw} bytes raw, ${s.gzip} bytes gzipped (${kb(s.gzip)}; ` +
      `goal ≤ ${profile.goal_gzip_bytes}, limit ≤ ${profile.max_gzip_bytes})`,
  );
  if (s.gzip > profile.max_gzip_bytes) failed = true;
}
if (sizeCheck && failed) {
  console.error('size check FAILED: the gzipped .wasm exceeds max_gzip_bytes of wasm-pack.toml');
  process.exit(1);
}
console.log(`built profile ${profileName} into ${outRoot}`);
