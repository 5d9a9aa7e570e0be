"""Bandwidth table of the GPU check: the card's copy bandwidth, caffe-loss's
achieved GB/s per layer and pass on the large nets, and PyTorch's equivalent
loss (forward + backward) at the same shapes.

Usage: python3 gpu_bandwidth.py CAFFE_LOSS_BIN NETS_DIR
Prints a Markdown table. Needs PyTorch with CUDA for the comparison columns.
"""

import re
import subprocess
import sys

# Net file -> (PyTorch loss, bytes the forward must read, bytes the backward
# must read and write), all float32.
NETS = {
    "softmax_loss_large": ("cross_entropy", 64 * 1000 * 256 * 4, 2 * 64 * 1000 * 256 * 4),
    "sigmoid_ce_large": ("bce_with_logits", 2 * 16 * 1024 * 1024 * 4, 3 * 16 * 1024 * 1024 * 4),
    "euclidean_large": ("mse", 2 * 4096 * 4096 * 4, 4 * 4096 * 4096 * 4),
}


def ours(binary, net):
    out = subprocess.run(
        [binary, "time", net, "--device", "cuda", "--iterations", "20"],
        check=True, capture_output=True, text=True).stdout
    forward = float(re.search(r"loss\s+forward: ([0-9.]+) ms", out).group(1))
    backward = float(re.search(r"loss\s+backward: ([0-9.]+) ms", out).group(1))
    return forward, backward


def torch_times(kind):
    import torch
    import torch.nn.functional as F

    def timed(fn, iterations=20):
        fn()
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iterations):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iterations

    dev = "cuda"
    if kind == "cross_entropy":
        x = torch.randn(64, 1000, 16, 16, device=dev, requires_grad=True)
        y = torch.randint(0, 1000, (64, 16, 16), device=dev)
        fn = lambda: F.cross_entropy(x, y).backward()
    elif kind == "bce_with_logits":
        x = torch.randn(16, 1, 1024, 1024, device=dev, requires_grad=True)
        t = torch.rand(16, 1, 1024, 1024, device=dev)
        fn = lambda: F.binary_cross_entropy_with_logits(x, t).backward()
    else:
        a = torch.randn(4096, 4096, device=dev, requires_grad=True)
        b = torch.randn(4096, 4096, device=dev, requires_grad=True)
        fn = lambda: F.mse_loss(a, b).backward()
    return timed(fn)


def copy_bandwidth():
    import torch
    src = torch.empty(64 * 1024 * 1024 // 4 * 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / 20
    return 2 * src.numel() * 4 / ms / 1e6


def main():
    binary, nets_dir = sys.argv[1], sys.argv[2]
    try:
        copy = copy_bandwidth()
    except Exception as error:  # PyTorch missing or without CUDA
        copy = None
        print(f"copy bandwidth unavailable: {error}")
    print("| net | fwd ms | fwd GB/s | bwd ms | bwd GB/s | % of copy (fwd/bwd) | PyTorch fwd+bwd ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (kind, fwd_bytes, bwd_bytes) in NETS.items():
        forward, backward = ours(binary, f"{nets_dir}/{name}.prototxt")
        fwd_gbs = fwd_bytes / forward / 1e6
        bwd_gbs = bwd_bytes / backward / 1e6
        share = "-" if copy is None else f"{100 * fwd_gbs / copy:.0f} / {100 * bwd_gbs / copy:.0f}"
        try:
            theirs = torch_times(kind)
            speedup = f"{theirs / (forward + backward):.2f}x"
            theirs = f"{theirs:.3f}"
        except Exception as error:
            theirs, speedup = f"unavailable ({error})", "-"
        print(f"| {name} | {forward:.3f} | {fwd_gbs:.0f} | {backward:.3f} | {bwd_gbs:.0f} | {share} | {theirs} | {speedup} |")
    if copy is not None:
        print(f"\ncopy bandwidth (read + write): {copy:.0f} GB/s")


if __name__ == "__main__":
    main()
