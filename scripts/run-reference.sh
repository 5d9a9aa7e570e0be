#!/usr/bin/env bash
# Runs `caffe-loss run` on every bundled Caffe 1.0 reference case and
# compares the tops and gradients with Caffe's (1e-4 relative tolerance).
# Usage: scripts/run-reference.sh [extra run options, e.g. --dtype f64]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
binary="${CARGO_TARGET_DIR:-target}/release/caffe-loss"
failed=0
for case in tests/data/caffe-reference/*; do
    [ -f "$case/net.prototxt" ] || continue
    args=()
    for input in "$case"/inputs/*.npy; do
        args+=(--input "$(basename "$input" .npy)=$input")
    done
    printf '%-38s ' "$(basename "$case")"
    if ! "$binary" run "$case/net.prototxt" "${args[@]}" \
        --expect "$case/expected" "$@" 2>&1 | tail -n 1; then
        failed=$((failed + 1))
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "$failed case(s) differ from Caffe" >&2
    exit 1
fi
