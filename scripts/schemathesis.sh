#!/usr/bin/env bash
# Property-based API tests: Schemathesis against a running `keystead serve`, driven by the
# server's own OpenAPI document (GET /openapi.json).
#
# Builds the binary, starts it on free loopback ports with a fresh data dir, seeds tenant
# `acme` and a service key scoped to it, and runs Schemathesis (examples, coverage, fuzzing
# and stateful phases) authenticated with that key; tests/schemathesis/schemathesis.toml
# steers most generated bodies to tenant `acme`. It fails on any 5xx, any answer whose
# status or body the document does not describe, and any route that never answered 2xx
# (checked from the HAR report; the key directory's device-signed and token routes, which a
# fixed header cannot authenticate, need only have answered). The server is stopped on exit.
#
# Schemathesis warns that unwrap and rekey mostly reject generated data: random bytes are
# not EDEKs (422 edek_invalid), which no schema can express. The stateful phase follows the
# document's links (wrap -> unwrap/rekey/batch-unwrap, rekey -> unwrap) to send real ones.
#
# Needs the project venv (scripts/setup-venv.sh installs schemathesis into it).
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 100: about
#                              1,700 requests, half a minute on a 2-core machine)
#   SCHEMATHESIS_SEED          Hypothesis seed (default fixed, for repeatable CI runs;
#                              set `random` for a fresh one)
#   KEEP_SCHEMATHESIS_DIR=1    keep the temp dir (server log, data dir, HAR report)
set -euo pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv_python="$root/.venv/bin/python"
schemathesis="$root/.venv/bin/schemathesis"
config="$root/tests/schemathesis/schemathesis.toml"
tenant=acme # must match the `tenants` dictionary in $config
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-20260101}"

if [[ ! -x "$schemathesis" ]]; then
    echo "schemathesis.sh: $schemathesis missing: run scripts/setup-venv.sh" >&2
    exit 1
fi

# The server reads KEYSTEAD_* from the environment (config file, TLS, dev mode, …) and
# Schemathesis a few SCHEMATHESIS_* (hooks, base URL): start from none of them, so the run
# depends on this script alone.
while IFS= read -r name; do
    unset "$name"
done < <(compgen -e | grep -E '^(KEYSTEAD_|SCHEMATHESIS_(HOOKS|BASE_URL|ORIGIN|WAIT_FOR_SCHEMA)$)' || true)

echo "schemathesis.sh: building keystead"
cargo build -p keystead-server --locked --quiet
bin="$(cargo metadata --format-version 1 --no-deps --locked \
    | "$venv_python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/keystead"

work="$(mktemp -d "${TMPDIR:-/tmp}/keystead-schemathesis.XXXXXX")"
data="$work/data"
log="$work/server.log"
har="$work/run.har"
server_pid=""

cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # Graceful shutdown drains requests; give it a few seconds, then insist.
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$log" ]]; then
        echo "schemathesis.sh: last lines of the server log ($log):" >&2
        tail -n 40 "$log" >&2 || true
    fi
    if [[ "${KEEP_SCHEMATHESIS_DIR:-0}" == 1 || $status -ne 0 ]]; then
        echo "schemathesis.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two free loopback ports (the kernel picks them; a race with another process binding the
# same port between here and `serve` is possible but harmless: the start check fails).
read -r api_port admin_port < <("$venv_python" -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()')
if [[ -z "${admin_port:-}" ]]; then
    echo "schemathesis.sh: could not pick free ports" >&2
    exit 1
fi
base="http://127.0.0.1:$api_port"

echo "schemathesis.sh: seeding tenant $tenant and a service key in $data"
"$bin" --data-dir "$data" tenant create "$tenant" 2>>"$log"
service_key="$("$bin" --data-dir "$data" service-key create schemathesis --tenant "$tenant" 2>>"$log")"
if [[ "$service_key" != ks_* ]]; then
    echo "schemathesis.sh: service-key create printed no key" >&2
    exit 1
fi

echo "schemathesis.sh: starting keystead serve on $base"
KEYSTEAD_LOG=warn "$bin" --data-dir "$data" serve \
    --listen "127.0.0.1:$api_port" --admin-listen "127.0.0.1:$admin_port" \
    >>"$log" 2>&1 &
server_pid=$!

"$venv_python" - "$base/health" "$server_pid" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("schemathesis.sh: keystead serve exited during startup")
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"schemathesis.sh: {url} did not answer 200 within 30 s")
    time.sleep(0.1)
EOF

seed_args=(--seed "$seed")
[[ "$seed" == random ]] && seed_args=()

echo "schemathesis.sh: schemathesis run ($max_examples examples per operation, seed $seed)"
# cwd = $work: nothing (Hypothesis database, reports) lands in the repository.
# One worker: with several, Hypothesis parses lambda sources with `ast` in parallel threads,
# which trips CPython 3.11's AST recursion counter ("SystemError: AST constructor recursion
# depth mismatch", fixed in later CPython releases) and fails the run at random.
# `timeout`: a hung server must not hold CI; the run takes well under a minute.
(
    cd "$work"
    KEYSTEAD_SERVICE_KEY="$service_key" timeout --kill-after=10 300 \
        "$schemathesis" --config-file "$config" run \
        "$base/openapi.json" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$max_examples" \
        "${seed_args[@]}" \
        --generation-database none \
        --request-timeout 10 \
        --workers 1 \
        --report har --report-har-path "$har" \
        --no-color
)

# Acceptance beyond the checks: every documented operation answered 2xx at least once, and
# no answer was a 5xx (already a failed check; repeated here from the wire record).
"$venv_python" - "$har" "$base" <<'EOF'
import collections, json, sys, urllib.parse, urllib.request
har, base = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(base + "/openapi.json", timeout=10) as r:
    doc = json.load(r)
# Schemathesis leaves out the operation serving the document it loaded; loading it (and
# the fetch above) is that operation's 2xx.
own = ("GET", urllib.parse.urlsplit(base + "/openapi.json").path)
operations = sorted((m.upper(), p) for p, item in doc["paths"].items() for m in item)
# Operations that accept neither no authentication nor the service key (the key directory's
# device-signed and token routes, docs/DIRECTORY.md) cannot be authenticated by a fixed
# header: they must answer, but not necessarily 2xx (401 is their expected answer here).
def needs_per_request_auth(method, path):
    sec = doc["paths"][path][method.lower()].get("security")
    return sec is not None and not any("service_key" in s for s in sec)
with open(har, encoding="utf-8") as f:
    entries = json.load(f)["log"]["entries"]
# Paths with parameters (`/v1/e2e/tenants/{tenant_id}/...`) are matched as templates: a
# parameter is one non-empty path segment.
import re
templates = [(m, p, re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"))
             for m, p in operations if "{" in p]
def operation_of(method, path):
    for m, p, rx in templates:
        if m == method and rx.match(path):
            return (m, p)
    return (method, path)
seen = collections.defaultdict(collections.Counter)
for e in entries:
    path = urllib.parse.urlsplit(e["request"]["url"]).path
    seen[operation_of(e["request"]["method"], path)][e["response"]["status"]] += 1
print(f"\nschemathesis.sh: {len(entries)} requests; answers by operation:")
failed = []
for op in operations:
    counts = seen.get(op, collections.Counter())
    if op == own:
        counts = counts + collections.Counter({200: 1})
    print(f"  {op[0]:5} {op[1]:56} " + ", ".join(f"{s}x{n}" for s, n in sorted(counts.items())))
    if needs_per_request_auth(*op):
        if not counts:
            failed.append(f"{op[0]} {op[1]} was never called")
    elif not any(200 <= s < 300 for s in counts):
        failed.append(f"{op[0]} {op[1]} never answered 2xx")
    if any(s >= 500 for s in counts):
        failed.append(f"{op[0]} {op[1]} answered 5xx")
# Schemathesis also tries methods the document does not list on each path (405 expected).
others = collections.Counter()
for op in sorted(set(seen) - set(operations)):
    others.update(seen[op])
    if any(s >= 500 for s in seen[op]):
        failed.append(f"{op[0]} {op[1]} answered 5xx")
if others:
    print(f"  {'other methods and paths':30} " + ", ".join(f"{s}x{n}" for s, n in sorted(others.items())))
if failed:
    sys.exit("schemathesis.sh: FAILED: " + "; ".join(failed))
print("schemathesis.sh: every operation answered 2xx; no 5xx")
EOF
