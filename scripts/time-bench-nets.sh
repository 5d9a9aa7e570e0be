#!/usr/bin/env bash
# Times every net in tests/data/bench-nets with `caffe-loss time` on the CPU
# and prints a Markdown table of forward and backward milliseconds next to
# the Caffe 1.0 times listed in tests/data/bench-nets/README.md.
# Usage: scripts/time-bench-nets.sh [iterations (default 20)] [dtype (default f32)]
set -euo pipefail
cd "$(dirname "$0")/.."

iterations=${1:-20}
dtype=${2:-f32}
cargo build --release --quiet
binary="${CARGO_TARGET_DIR:-target}/release/caffe-loss"
readme=tests/data/bench-nets/README.md

echo "| net | Caffe forward | ours forward | ratio | Caffe backward | ours backward | ratio |"
echo "|---|---|---|---|---|---|---|"
for model in tests/data/bench-nets/*.prototxt; do
    net=$(basename "$model" .prototxt)
    output=$("$binary" time "$model" --iterations "$iterations" --dtype "$dtype")
    # Per-layer lines read `<layer>\tforward: <ms> ms.`; every bench net has
    # one Input layer, named "input", and one timed layer.
    forward=$(awk '$1 != "input" && $2 == "forward:" {print $3}' <<<"$output")
    backward=$(awk '$1 != "input" && $2 == "backward:" {print $3}' <<<"$output")
    # The README's table rows read `| <net> | <forward> | <backward> |`.
    caffe=$(awk -F'|' -v net="$net" '{gsub(/ /, "", $2)} $2 == net {print $3, $4}' "$readme")
    read -r caffe_forward caffe_backward <<<"$caffe"
    awk -v net="$net" -v cf="$caffe_forward" -v of="$forward" \
        -v cb="$caffe_backward" -v ob="$backward" 'BEGIN {
        printf "| %s | %s | %s | %.2f | %s | %s | %.2f |\n", net, cf, of, of / cf, cb, ob, ob / cb
    }'
done
