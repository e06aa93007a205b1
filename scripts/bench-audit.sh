#!/usr/bin/env bash
# What the audit pipeline costs in throughput (issue 6's goal: at most −30 %), measured
# the only way that is stable on a shared machine: audit off and on alternating, several
# rounds, medians compared. Each run is scripts/bench-server.sh (a fresh server and data
# dir). Not a test.
#
#   ROUNDS (default 3)  DURATION (default 10s)  ROUTES (default "wrap unwrap")
#   CONNECTIONS, THREADS as in bench-server.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${ROUNDS:-3}"
routes="${ROUTES:-wrap unwrap}"
read -r -a names <<<"$routes"
export DURATION="${DURATION:-10s}"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

for round in $(seq "$rounds"); do
  for audit in off on; do
    out="$(AUDIT=$audit ROUTES="$routes" bash "$root/scripts/bench-server.sh" 2>&1)" || {
      echo "$out" >&2
      echo "bench-audit: bench-server.sh failed (round $round, audit $audit)" >&2
      exit 1
    }
    # One "Requests/sec" line per route, in the order of $routes.
    read -r -a rates <<<"$(awk '/^Requests\/sec/ {print $2}' <<<"$out" | tr '\n' ' ')"
    if [ "${#rates[@]}" -ne "${#names[@]}" ]; then
      echo "$out" >&2
      echo "bench-audit: expected ${#names[@]} wrk results, got ${#rates[@]} (round $round, audit $audit)" >&2
      exit 1
    fi
    for i in "${!names[@]}"; do
      echo "${names[$i]} $audit ${rates[$i]}" >>"$results"
    done
    echo "round $round, audit $audit: ${rates[*]} requests/s ($routes)"
  done
done

python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    route, audit, rate = line.split()
    runs.setdefault(route, {}).setdefault(audit, []).append(float(rate))
print()
print(f"{'route':<8} {'off (median)':>14} {'on (median)':>14} {'change':>8}  runs off / on")
for route, r in runs.items():
    off, on = statistics.median(r["off"]), statistics.median(r["on"])
    change = 100 * (on / off - 1) if off else float("nan")
    runs_txt = " ".join(f"{x/1000:.1f}k" for x in r["off"]) + " / " + " ".join(f"{x/1000:.1f}k" for x in r["on"])
    print(f"{route:<8} {off:>14,.0f} {on:>14,.0f} {change:>7.1f}%  {runs_txt}")
PY
