#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, no_std builds, the Rust test suites
# (including the HPKE interop test against pyhpke in the project venv), the supply-chain
# policy, the fuzz smoke run, a compile check of the benchmarks and Schemathesis against a
# running server (schemathesis from the project venv), and the WebAssembly SDK: its build and
# size check, wasm32 lints, TypeScript types, wasm-pack tests in Node and headless Chromium,
# the npm package's Node tests, the Playwright browser test and the 1 GiB constant-memory
# test.
#
# Needs what .ci/run installs (cargo-deny, cargo-fuzz, the nightly toolchain); a step whose
# tool is missing fails with a message saying how to install it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n== %s\n' "$*"; }
need() {
  command -v "$1" >/dev/null 2>&1 || cargo "$1" --version >/dev/null 2>&1 || {
    echo "missing tool: $1 ($2)" >&2
    exit 1
  }
}

step "python venv for interop tests"
bash scripts/setup-venv.sh

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "no_std builds (wasm32, thumbv7em)"
cargo build -p keystead-core --no-default-features --locked --target wasm32-unknown-unknown
cargo build -p keystead-core --no-default-features --locked --target thumbv7em-none-eabihf

step "supply chain: cargo deny check licenses bans sources"
need deny "cargo install cargo-deny --locked"
cargo deny --locked check licenses bans sources

step "benchmarks compile"
cargo bench --workspace --locked --no-run

step "fuzz smoke run"
need fuzz "cargo install cargo-fuzz --locked"
bash scripts/fuzz-smoke.sh

step "schemathesis: the running server against its OpenAPI document"
bash scripts/schemathesis.sh

step "tests"
cargo test --workspace --locked

# ---- WebAssembly SDK (crates/wasm, npm/) -------------------------------------------------
need wasm-bindgen "cargo install wasm-bindgen-cli --version 0.2.130"
need wasm-pack "cargo install wasm-pack --locked --version 0.15.1"
need chromedriver "apt-get install -y chromium chromium-driver"
[ -d npm/node_modules ] || { echo "missing npm/node_modules (run: cd npm && npm ci)" >&2; exit 1; }

step "wasm SDK: build (wasm-pack.toml, profile release) and gzipped size check (fails > 200 KB)"
(cd npm && node scripts/build.mjs)

step "wasm SDK: clippy for wasm32"
cargo clippy -p keystead-wasm --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

step "wasm SDK: TypeScript types (tsc --noEmit)"
(cd npm && npx --no-install tsc -p tsconfig.json)

step "wasm SDK: wasm-pack test --node"
wasm-pack test --node crates/wasm --locked

step "wasm SDK: wasm-pack test --headless --chrome (Debian chromium + chromium-driver)"
# Without this the runner keeps the (unconfigured) tests for Node; crates/wasm/webdriver.json
# gives Chromium its flags.
WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome crates/wasm --locked

step "wasm SDK: node --test against the built package"
(cd npm && npm test)

step "wasm SDK: Playwright in Chromium (file input, upload, download, 50 MB ranged read)"
(cd npm && npm run test:browser)

step "wasm SDK: 1 GiB through encrypt -> decrypt in Node, peak RSS < 200 MB"
(cd npm && npm run test:rss)
