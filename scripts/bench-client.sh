#!/usr/bin/env bash
# Client throughput benchmark (not a test): documents of 10 fields × 100 B through
# encrypt_batch / decrypt_batch against a release `keystead serve` on loopback (leased
# built-in tenant), plus local field crypto alone. Figures go to docs/BENCHMARKS.md.
#
#   BENCH_SECONDS (per phase, default 10)  BATCH (default 500)  CONCURRENCY (default 4)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release --locked -p keystead-server
bin="${CARGO_TARGET_DIR:-$root/target}/release/keystead"
work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin" --data-dir "$work/data" tenant create acme --mode leasing
key="$("$bin" --data-dir "$work/data" service-key create bench --tenant acme)"
KEYSTEAD_LOG=warn "$bin" --data-dir "$work/data" serve --listen "127.0.0.1:$port" \
  --rate-limit-tenant 0 --rate-limit-key 0 \
  --admin-listen "127.0.0.1:$((port + 1))" 2>"$work/server.log" &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

KEYSTEAD_BENCH_URL="http://127.0.0.1:$port" KEYSTEAD_BENCH_KEY="$key" KEYSTEAD_BENCH_TENANT=acme \
  cargo bench --locked -p keystead-client --bench throughput
echo "audit events written by the server: $(wc -l < "$work/data/audit.jsonl")"
