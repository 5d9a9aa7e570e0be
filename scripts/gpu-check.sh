#!/usr/bin/env bash
# Runs the GPU checks on a machine with an NVIDIA GPU and no Rust toolchain.
#
# Usage: scripts/gpu-check.sh BIN_DIR
#   BIN_DIR  folder with the prebuilt test binaries (gpu_ops-<hash>,
#            gpu_launch-<hash>, ... as `cargo test --release --no-run
#            --message-format=json` names them) and optionally the
#            caffe-loss CLI.
# Logs go to $OUT, or ./gpu-out when OUT is unset.
#
# Steps, each under its own time limit (about 5 minutes in all):
#   1. print the GPU, driver and the CUDA libraries found;
#   2. run every test binary whose name starts with gpu_; a test that prints
#      "skipped:" counts as a failure here, since this machine has a GPU;
#   3. run the small sanitizer case under compute-sanitizer memcheck and
#      racecheck, when compute-sanitizer is installed;
#   4. compile every kernel with the CLI (`caffe-loss kernels`), when present;
#   5. the bandwidth table of scripts/gpu_bandwidth.py on benches/nets.
# Exits non-zero when any step fails.

set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BIN_DIR (a folder with the prebuilt test binaries)" >&2
    exit 2
fi
BIN_DIR="$(cd "$1" && pwd)"
OUT_DIR="${OUT:-./gpu-out}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
SUMMARY="$OUT_DIR/summary.txt"
: >"$SUMMARY"
failures=0

note() {
    echo "$*" | tee -a "$SUMMARY"
}

# Runs "$@" with a time limit, logging to $OUT_DIR/$name.log.
step() {
    local name="$1" limit="$2"
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local status=$?
    local elapsed=$((SECONDS - started))
    if [ $status -eq 0 ]; then
        note "ok      $name (${elapsed}s)"
    else
        note "FAILED  $name (exit $status after ${elapsed}s, log $OUT_DIR/$name.log)"
        failures=$((failures + 1))
    fi
    return $status
}

# --- 1. Environment -------------------------------------------------------

# NVRTC: already on the loader path, else the CUDA toolkit's, else a pip
# wheel's (nvidia/cu13/lib).
nvrtc_found() {
    ldconfig -p 2>/dev/null | grep -q 'libnvrtc.so.13' && return 0
    local dir
    for dir in $(printf '%s' "${LD_LIBRARY_PATH:-}" | tr ':' ' '); do
        [ -e "$dir/libnvrtc.so.13" ] && return 0
    done
    return 1
}
if ! nvrtc_found; then
    wheel_lib="$(python3 -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)"
    for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib "$wheel_lib"; do
        if [ -n "$dir" ] && [ -e "$dir/libnvrtc.so.13" ]; then
            export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            break
        fi
    done
fi
# Compiled PTX is shared by all steps of this run.
export CAFFE_LOSS_PTX_CACHE="$OUT_DIR/ptx-cache"
export RUST_BACKTRACE=1

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "bin dir: $BIN_DIR"
    echo "LD_LIBRARY_PATH: ${LD_LIBRARY_PATH:-}"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    echo "libcuda: $(ldconfig -p 2>/dev/null | grep -m1 'libcuda.so.1' || echo 'not in ldconfig')"
    for d in $(printf '%s' "${LD_LIBRARY_PATH:-}" | tr ':' ' '); do
        ls "$d"/libnvrtc.so* 2>/dev/null
    done
    command -v compute-sanitizer || echo "compute-sanitizer: not found"
} >"$OUT_DIR/environment.log" 2>&1
cat "$OUT_DIR/environment.log"

# --- 2. GPU test binaries -------------------------------------------------

found_tests=0
for test_bin in "$BIN_DIR"/gpu_*; do
    [ -f "$test_bin" ] && [ -x "$test_bin" ] || continue
    case "$test_bin" in *.d) continue ;; esac
    found_tests=$((found_tests + 1))
    name="$(basename "$test_bin" | sed 's/-[0-9a-f]\{16\}$//')"
    step "$name" 180 "$test_bin" --include-ignored --nocapture
    if grep -q "^skipped:" "$OUT_DIR/$name.log"; then
        note "FAILED  $name skipped tests on a GPU machine: $(grep -m1 '^skipped:' "$OUT_DIR/$name.log")"
        failures=$((failures + 1))
    fi
    grep -E "^test result:" "$OUT_DIR/$name.log" | tee -a "$SUMMARY"
done
if [ $found_tests -eq 0 ]; then
    note "FAILED  no gpu_* test binary in $BIN_DIR"
    failures=$((failures + 1))
fi

# --- 3. compute-sanitizer on a small case ---------------------------------

ops_bin="$(ls "$BIN_DIR"/gpu_ops* 2>/dev/null | grep -v '\.d$' | head -n 1)"
if command -v compute-sanitizer >/dev/null 2>&1 && [ -n "$ops_bin" ]; then
    for tool in memcheck racecheck; do
        step "sanitizer-$tool" 120 compute-sanitizer --tool "$tool" --error-exitcode 1 \
            "$ops_bin" sanitizer_small_cases --exact --include-ignored --test-threads=1 --nocapture
    done
else
    note "skip    compute-sanitizer (not installed, or no gpu_ops binary)"
fi

# --- 4. Kernel table from the CLI -----------------------------------------

if [ -x "$BIN_DIR/caffe-loss" ]; then
    step "cli-kernels" 120 "$BIN_DIR/caffe-loss" kernels --out "$OUT_DIR/ptx"
else
    note "skip    caffe-loss kernels (no CLI in $BIN_DIR)"
fi

# --- 5. Bandwidth table --------------------------------------------------

NETS_DIR="$(cd "$(dirname "$0")/.." && pwd)/benches/nets"
if [ -x "$BIN_DIR/caffe-loss" ] && [ -d "$NETS_DIR" ]; then
    step "bandwidth" 180 python3 "$(dirname "$0")/gpu_bandwidth.py" "$BIN_DIR/caffe-loss" "$NETS_DIR"
else
    note "skip    bandwidth table (no CLI in $BIN_DIR or no $NETS_DIR)"
fi

note "failures: $failures"
[ $failures -eq 0 ]
