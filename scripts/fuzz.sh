#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time, one after another, so that
# only one core is busy. The corpora start from the files in tests/data.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600
#   TARGET              prototxt, binaryproto, npy, layers (default: all four)
#
# Needs a nightly toolchain (FUZZ_TOOLCHAIN, default "nightly") and
# cargo-fuzz (cargo install cargo-fuzz). Crashes are written to
# fuzz/artifacts/<target>/; the script goes on with the next target and
# exits with status 1 when any target crashed.

set -uo pipefail

seconds="${1:-600}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(prototxt binaryproto npy layers)
fi
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz" || exit 2

# Copies the files of tests/data that match a pattern into a new corpus,
# named by content hash because many share a name (net.prototxt).
seed_corpus() {
    local dir="corpus/$1" pattern="$2" file
    [ -d "$dir" ] && return
    mkdir -p "$dir"
    [ -z "$pattern" ] && return
    while IFS= read -r -d '' file; do
        cp "$file" "$dir/$(sha1sum "$file" | cut -c1-16)"
    done < <(find "$root/tests/data" -name "$pattern" -print0)
}

failed=()
for target in "${targets[@]}"; do
    extra=()
    case "$target" in
        prototxt) seed_corpus prototxt "*.prototxt"; extra=("-dict=$root/fuzz/dict/prototxt.dict") ;;
        binaryproto) seed_corpus binaryproto "*.binaryproto" ;;
        npy) seed_corpus npy "*.npy" ;;
        layers) seed_corpus layers "" ;;
        *) echo "fuzz.sh: unknown target '$target'" >&2; exit 2 ;;
    esac
    echo "fuzz.sh: running $target for $seconds s"
    if ! cargo "+$toolchain" fuzz run "$target" "$root/fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "${extra[@]}"; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes"
