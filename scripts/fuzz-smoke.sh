#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target of keystead-core (crates/core/fuzz) and of
# keystead-server (crates/server/fuzz), writes the core's seed corpora and runs each target
# for a short while. Exits non-zero if any target crashes (a panic,
# a failed assertion, a sanitizer report, a timeout or running out of memory).
#
#   FUZZ_SECONDS   seconds per target (default 15)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 30)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The repository
# pins a stable toolchain in rust-toolchain.toml, so every cargo call here names +nightly.
# See docs/FUZZING.md.
set -euo pipefail

seconds="${FUZZ_SECONDS:-15}"
timeout="${FUZZ_TIMEOUT:-30}"
for v in "$seconds" "$timeout"; do
    if ! [[ "$v" =~ ^[1-9][0-9]*$ ]]; then
        echo "fuzz-smoke: FUZZ_SECONDS and FUZZ_TIMEOUT must be positive integers" >&2
        exit 2
    fi
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: needs the nightly toolchain and cargo-fuzz" >&2
    exit 2
fi

failed=()
total=0
for crate in core server; do
    cd "$root/crates/$crate"
    # cargo-fuzz has no --locked flag: check up front that the fuzz crate's committed
    # Cargo.lock is current, so that the build below cannot quietly rewrite it.
    cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

    echo "fuzz-smoke: building the fuzz targets of crates/$crate"
    cargo +nightly fuzz build

    if [ "$crate" = core ]; then
        echo "fuzz-smoke: writing the seed corpora"
        cargo +nightly run --quiet --locked --manifest-path fuzz/Cargo.toml --bin make_seeds
    fi

    mapfile -t targets < <(cargo +nightly fuzz list)
    if [ "${#targets[@]}" -eq 0 ]; then
        echo "fuzz-smoke: no fuzz targets found in crates/$crate" >&2
        exit 1
    fi

    for t in "${targets[@]}"; do
        echo "fuzz-smoke: running $t (crates/$crate) for ${seconds}s"
        # libFuzzer prints a line for every new corpus entry; drop those to keep the log
        # short. Crash reports, the final DONE line and the final stats are kept. With
        # pipefail the pipeline fails when the fuzzer does.
        if ! cargo +nightly fuzz run "$t" -- \
            -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 2>&1 |
            grep --line-buffered -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)[[:space:]]'; then
            failed+=("$crate/$t")
        fi
        total=$((total + 1))
    done
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in crates/<crate>/fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: ${total} targets ran ${seconds}s each without a crash"
