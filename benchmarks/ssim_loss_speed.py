"""Time of the SSIM term in training: kornia's SSIM map (2-D window) against ``ssim_map_float`` (two 1-D passes).

Usage: python benchmarks/ssim_loss_speed.py [--batch 64] [--threads 1] [--rounds 30]
Forward and backward on random 32x32 RGB batches (one process's share of the global batch 128 under the
2-process torchrun recipe), measured side by side in interleaved rounds; prints milliseconds and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from kornia.metrics import ssim as kornia_ssim

from autocolor.errors import run_main
from autocolor.metrics import ssim_map_float


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, requires_grad=True)
    y = torch.rand(args.batch, 3, 32, 32)
    fns = {"kornia.metrics.ssim": lambda: kornia_ssim(x, y, 11, max_val=1.0, padding="valid"),
           "ssim_map_float": lambda: ssim_map_float(x, y)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(args.rounds + 3):  # 3 warm-up rounds
        for name, fn in fns.items():
            t = time.perf_counter()
            fn().mean().backward()
            if r >= 3:
                times[name].append(time.perf_counter() - t)
    ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.rounds} interleaved rounds")
    for name, v in ms.items():
        print(f"{name}: {v:.1f} ms forward + backward")
    print(f"ratio: {ms['kornia.metrics.ssim'] / ms['ssim_map_float']:.2f}x")


if __name__ == "__main__":
    run_main(main)
