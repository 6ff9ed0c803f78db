#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20): `fuzz/smoke.sh [N]`.
# Exits non-zero if the build fails or any target crashes, hangs or runs out of memory.
#
# Works on the stable toolchain: cargo-fuzz passes `-Zsanitizer=address`, which rustc only
# accepts on stable with RUSTC_BOOTSTRAP=1 (set below). FUZZ_SANITIZER=none builds without
# AddressSanitizer (no -Z flag at all, about 5x more executions; switching it rebuilds
# everything). cargo-fuzz is installed from crates.io when missing. Logs go to fuzz/target/smoke/<target>.log, crash inputs to
# fuzz/artifacts/<target>/, the growing corpus to fuzz/corpus/<target>/ (all git-ignored).
set -uo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [seconds per target, default 20]" >&2
    exit 2
fi

sanitizer="${FUZZ_SANITIZER:-address}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || exit 1
fi

build_start=$SECONDS
if ! cargo fuzz build --sanitizer "$sanitizer"; then
    echo "smoke: build failed" >&2
    exit 1
fi
echo "smoke: built all targets (sanitizer: $sanitizer) in $((SECONDS - build_start))s"

mkdir -p target/smoke
failed=()
summary=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    dirs=("corpus/$target")
    extra=()
    if [ -d "seeds/$target" ]; then
        dirs+=("seeds/$target")
    fi
    # The dictionary holds JSON keys and values: useful to the text targets only, not to the
    # ones that decode their input with `arbitrary` or read binary Signal messages and records.
    case "$target" in
        agent_session | signal_message | session_decrypt | session_record) ;;
        *) extra+=("-dict=$here/pacerelle.dict") ;;
    esac
    log="target/smoke/$target.log"
    echo "smoke: $target for ${seconds}s"
    cargo fuzz run --sanitizer "$sanitizer" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=25 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    status=$?
    runs="$(grep -Eo '^Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1)"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        summary+=("$target: FAILED (exit $status), see fuzz/$log")
        echo "---- $target failed; end of fuzz/$log:" >&2
        tail -n 60 "$log" >&2
    else
        summary+=("$target: ok, ${runs:-?} runs in ${seconds}s")
    fi
done

echo "smoke: summary"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "smoke: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
