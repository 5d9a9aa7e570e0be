#!/usr/bin/env bash
# Runs the whole test suite: installs NVRTC and ptxas from PyPI wheels into
# .venv (needed to compile and assemble the CUDA kernels; no GPU needed),
# then `cargo test` with the variables the kernel tests read.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=install-cuda-wheels.sh
. scripts/install-cuda-wheels.sh
cargo test --release "$@"
