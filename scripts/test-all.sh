#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, no_std builds, the Rust test suites
# (including the HPKE interop test against pyhpke in the project venv), the supply-chain
# policy, the fuzz smoke run, a compile check of the benchmarks and Schemathesis against a
# running server (schemathesis from the project venv).
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
