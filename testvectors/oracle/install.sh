#!/usr/bin/env bash
# Installs the official Pacerelle SDK (the conformance oracle) into a folder, from PyPI only.
#   bash testvectors/oracle/install.sh [DIR]      (default: ${CARGO_TARGET_DIR:-<repo>/target}/oracle)
# Idempotent (a stamp marks a complete install) and safe to run from concurrent test processes
# (flock). Prints DIR as its last line. Exits non-zero with the reason when anything fails.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

SDK_VERSION="0.1.0a8"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${1:-${CARGO_TARGET_DIR:-$repo/target}/oracle}"
stamp="$dir/.installed-pacerelle-$SDK_VERSION"

mkdir -p "$dir"
exec 9>"$dir/.install.lock"
flock 9

if [ ! -f "$stamp" ]; then
    command -v python3 >/dev/null || { echo "install.sh: python3 is required" >&2; exit 1; }
    python3 -m pip --version >/dev/null 2>&1 || { echo "install.sh: pip for python3 is required" >&2; exit 1; }
    echo "install.sh: installing pacerelle==$SDK_VERSION into $dir" >&2
    # The wheel declares Python 3.12 but runs on 3.11; it bundles libsignalwrap.so.
    python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$dir" --no-deps \
        --ignore-requires-python --python-version 3.12 --only-binary :all: --upgrade "pacerelle==$SDK_VERSION" >&2
    # Its own dependencies, for this interpreter, into the same folder (no system changes).
    python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$dir" --upgrade \
        websockets cryptography >&2
    PYTHONPATH="$dir" python3 -c "import pacerelle, websockets, cryptography; assert pacerelle.__version__ == '$SDK_VERSION', pacerelle.__version__" \
        || { echo "install.sh: the installed SDK does not import" >&2; exit 1; }
    touch "$stamp"
fi
echo "$dir"
