#!/usr/bin/env bash
# Load benchmark of the Encryption Service with wrk (not a test): wrap, unwrap and
# batch-unwrap of 1000 EDEKs for a leased built-in tenant on loopback.
#
#   DURATION (default 20s)  CONNECTIONS (default 64)  THREADS (default 1)
#   ROUTES (default "wrap unwrap batch")  which runs, in this order
#   AUDIT=off  runs the server with --unsafe-no-audit (no audit events at all) to measure
#              what the audit pipeline costs; the default is the real pipeline (durable
#              spool, hash chain, checkpoints, delivery to the default per-tenant file).
#
# The server gets one core's worth of load from wrk on the same 2-core machine; see
# docs/BENCHMARKS.md for figures and where the time goes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v wrk >/dev/null || { echo "bench-server: needs wrk (apt-get install wrk)" >&2; exit 2; }
duration="${DURATION:-20s}"
routes="${ROUTES:-wrap unwrap batch}"
for route in $routes; do
  case "$route" in
    wrap | unwrap | batch) ;;
    *) echo "bench-server: unknown route $route (wrap, unwrap, batch)" >&2; exit 2 ;;
  esac
done
conns="${CONNECTIONS:-64}"
threads="${THREADS:-1}"

cargo build --release --locked -p keystead-server
bin="${CARGO_TARGET_DIR:-$root/target}/release/keystead"
work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
admin=$((port + 1))
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin" --data-dir "$work/data" tenant create acme --mode leasing
export KEYSTEAD_KEY="$("$bin" --data-dir "$work/data" service-key create bench --tenant acme)"
audit_flag=()
[ "${AUDIT:-on}" = off ] && audit_flag=(--unsafe-no-audit)
KEYSTEAD_LOG=warn "$bin" --data-dir "$work/data" serve --listen "127.0.0.1:$port" \
  --rate-limit-tenant 0 --rate-limit-key 0 "${audit_flag[@]}" \
  --admin-listen "127.0.0.1:$admin" 2>"$work/server.log" &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

api="http://127.0.0.1:$port"
md='"metadata":{"requesting_id":"bench"}'
echo "{\"tenant_id\":\"acme\",$md}" > "$work/wrap.json"
edek=$(curl -sf "$api/v1/keys/wrap" -H "Authorization: Bearer $KEYSTEAD_KEY" -d @"$work/wrap.json" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["edek"])')
echo "{\"tenant_id\":\"acme\",\"edek\":\"$edek\",$md}" > "$work/unwrap.json"
ids=$(python3 -c 'import json; print(json.dumps([f"r{i}" for i in range(1000)]))')
curl -sf "$api/v1/keys/batch-wrap" -H "Authorization: Bearer $KEYSTEAD_KEY" \
  -d "{\"tenant_id\":\"acme\",\"ids\":$ids,$md}" |
  python3 -c 'import json,sys; k=json.load(sys.stdin)["keys"]; print(json.dumps({"tenant_id":"acme","edeks":{i:v["edek"] for i,v in k.items()},"metadata":{"requesting_id":"bench"}}))' \
  > "$work/batch.json"

run() {
  local name=$1 body=$2 path=$3 c=$4
  echo
  echo "== $name: wrk -t$threads -c$c -d$duration --latency $path"
  BODY_FILE="$body" wrk -t"$threads" -c"$c" -d"$duration" --latency -s scripts/bench/post.lua "$api$path"
}
for route in $routes; do
  case "$route" in
    wrap) run wrap "$work/wrap.json" /v1/keys/wrap "$conns" ;;
    unwrap) run unwrap "$work/unwrap.json" /v1/keys/unwrap "$conns" ;;
    batch) run "batch-unwrap (1000 EDEKs per request)" "$work/batch.json" /v1/keys/batch-unwrap 4 ;;
  esac
done
echo
echo "== server-side latency histogram (admin /metrics)"
curl -sf "http://127.0.0.1:$admin/metrics" | grep -E 'request_duration_seconds_(bucket|count|sum)\{route="/v1/keys/(wrap|unwrap)"' | grep -E 'le="(0.00001|0.000025|0.00005|0.0001|0.00025)"|_sum|_count'
