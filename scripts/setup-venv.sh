#!/usr/bin/env bash
# Creates (or refreshes) the project-local Python venv `.venv/` at the repository root and
# installs tests/interop/requirements.txt into it. The HPKE interop test
# (crates/core/tests/hpke_interop.rs) runs `.venv/bin/python` unless KEYSTEAD_PYTHON is set.
#
# Idempotent: a stamp inside the venv records the SHA-256 of requirements.txt; when it
# matches and the venv's python runs, the script exits without touching anything.
#
# Environment: PYTHON = interpreter used to create the venv (default: python3).
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"
requirements="$repo_root/tests/interop/requirements.txt"
stamp="$venv/.keystead-requirements.sha256"
base_python="${PYTHON:-python3}"

if [[ ! -f "$requirements" ]]; then
    echo "setup-venv: missing $requirements" >&2
    exit 1
fi

# Hash with Python itself (always available here; sha256sum/shasum differ between systems).
hash_file() {
    "$base_python" -c 'import hashlib, sys
with open(sys.argv[1], "rb") as f:
    print(hashlib.sha256(f.read()).hexdigest())' "$1"
}

want="$(hash_file "$requirements")"

# Fast path: venv present, its interpreter works, and it was built from this requirements.txt.
if [[ -f "$stamp" && -x "$venv/bin/python" ]] \
    && [[ "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c '' 2>/dev/null; then
    echo "setup-venv: $venv is up to date"
    exit 0
fi

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
    echo "setup-venv: updating $venv"
else
    # Missing or broken (e.g. its base interpreter was removed): start from scratch.
    echo "setup-venv: creating $venv with $("$base_python" --version 2>&1)"
    "$base_python" -m venv --clear "$venv"
fi

# Remove the stamp first so an interrupted install is never mistaken for a complete one.
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
"$venv/bin/python" -c 'import pyhpke, cryptography; print("setup-venv: pyhpke", pyhpke.__version__, "/ cryptography", cryptography.__version__)'
printf '%s\n' "$want" >"$stamp"
echo "setup-venv: done"
