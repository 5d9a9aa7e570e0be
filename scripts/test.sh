#!/usr/bin/env bash
# Runs the whole test suite: installs NVRTC and ptxas from PyPI wheels into
# .venv (needed to compile and assemble the CUDA kernels; no GPU needed),
# then `cargo test` with the variables the kernel tests read, and prints the
# totals over every test binary as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=install-cuda-wheels.sh
. scripts/install-cuda-wheels.sh

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --release "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "total: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
