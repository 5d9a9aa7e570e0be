#!/usr/bin/env bash
# Installs NVRTC and ptxas from NVIDIA's PyPI wheels into .venv at the
# repository root, so that kernels compile and assemble on a machine with no
# CUDA toolkit and no GPU.
#
# Run it, or source it to also export the variables the tests read:
#   . scripts/install-cuda-wheels.sh
# exports
#   LD_LIBRARY_PATH   with the wheel's lib folder first. cudarc 0.19 (feature
#                     cuda-13000) dlopens "libnvrtc.so", then ... "libnvrtc.so.13"
#                     by bare name, so the dynamic loader must find the folder
#                     through LD_LIBRARY_PATH; the loader reads it only at
#                     process start, so export it before running cargo.
#   CAFFE_LOSS_PTXAS  the wheel's ptxas, used by tests/kernels_ptx.rs.
# A second run with the pinned versions already present installs nothing.
#
# The versions are pinned because PTX from a newer NVRTC carries a newer PTX
# ISA version, which an older driver refuses to load. 13.0 matches the CUDA
# 13.0 driver (580 series) of the GPU machine used for the device checks.

# nvidia-cuda-nvcc pulls in the other three; they are pinned as well so that
# the lib folder does not mix CUDA releases.
CAFFE_LOSS_CUDA_WHEELS=(
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-runtime==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
)

# A function with `return` on failure, in place of `set -e`, so that a shell
# that sources this file keeps its options.
caffe_loss_install_cuda_wheels() {
    local repo venv python site lib ptxas
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    venv="$repo/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" || return 1
    fi
    python="$venv/bin/python"

    # `pip list --format=freeze` prints one `name==version` line per package.
    local installed wheel missing=0
    installed="$("$python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null)" ||
        installed=""
    for wheel in "${CAFFE_LOSS_CUDA_WHEELS[@]}"; do
        if ! grep -Fxq "$wheel" <<<"$installed"; then
            missing=1
        fi
    done
    if [ "$missing" = 1 ]; then
        "$python" -m pip install --quiet --disable-pip-version-check "${CAFFE_LOSS_CUDA_WHEELS[@]}" ||
            return 1
    fi

    site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    lib="$site/nvidia/cu13/lib"
    ptxas="$site/nvidia/cu13/bin/ptxas"
    if [ ! -e "$lib/libnvrtc.so.13" ]; then
        echo "install-cuda-wheels: libnvrtc.so.13 not found in $lib" >&2
        return 1
    fi
    if [ ! -x "$ptxas" ]; then
        echo "install-cuda-wheels: ptxas not found at $ptxas" >&2
        return 1
    fi

    echo "nvrtc lib dir: $lib"
    echo "ptxas:         $ptxas"
    case ":${LD_LIBRARY_PATH:-}:" in
        *":$lib:"*) ;;
        *) export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
    export CAFFE_LOSS_PTXAS="$ptxas"
    if [ "${BASH_SOURCE[0]}" = "$0" ]; then
        echo "to use them in this shell, run:"
        echo "  export LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH\""
        echo "  export CAFFE_LOSS_PTXAS=\"$ptxas\""
    fi
}

caffe_loss_install_cuda_wheels
caffe_loss_install_status=$?
unset -f caffe_loss_install_cuda_wheels
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exit "$caffe_loss_install_status"
fi
return "$caffe_loss_install_status"
