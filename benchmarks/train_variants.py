"""What else might lift the seed training step's share of the bf16 GEMM rate: batch size and torch.compile.

Interleaved in one run (rounds rotate the order), each variant trains the same number of images per round
with the step ``autocolor train`` runs (``autocolor.train.train_step``, bf16 autocast, channels_last):
eager at batch 128 (what ``train`` does), eager at 256 and 512, and ``torch.compile`` (inductor) at 128,
whose compile time is reported apart. Each is also given as a fraction of the 2048^3 bf16 GEMM rate
measured in the same rounds.

    OMP_NUM_THREADS=1 python benchmarks/train_variants.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu, forward_flops, gemm_rate, interleave, load, median, omp_note, paired_ratio, wall, write_json  # noqa: E402,I001
from train_throughput import GEMM_LABEL, TorchTrainer  # noqa: E402

from autocolor.data import epoch_batches  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.runtime import machine_name  # noqa: E402
from autocolor.train import train_step  # noqa: E402
from autocolor.errors import run_main  # noqa: E402


class Variant(TorchTrainer):
    """``TorchTrainer`` (bf16) whose forward may go through ``torch.compile``; the loss and optimizer stay eager."""

    def __init__(self, batch: int, steps: int, compiled: bool = False) -> None:
        self.net = None
        super().__init__("bf16", batch, steps)  # its warm-up round runs eager
        self.compile_s = None
        if compiled:
            self.net = torch.compile(self.model)
            t0 = time.perf_counter()
            self.round()  # compiles (forward and backward graphs)
            self.compile_s = time.perf_counter() - t0

    def _epoch(self) -> None:
        for imgs, _ in epoch_batches(self.split, self.batch, 0, self.epoch):
            net = self.model if self.net is None else self.net
            loss = train_step(net, self.model, self.opt, imgs, self.device, self.precision)
        float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--images", type=int, default=None, help="images per variant per round (multiple of 512)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    images = args.images or (512 if args.quick else 1024)
    print(f"# {machine_name()}; torch {torch.__version__}; {torch.get_num_threads()} thread(s); {rounds} rounds x "
          f"{images} images per variant; {omp_note()}; {load()}", flush=True)
    variants = {f"eager, batch {b}": Variant(b, images // b) for b in (128, 256, 512)}
    if not args.no_compile:
        variants["torch.compile, batch 128"] = Variant(128, images // 128, compiled=True)
    contenders = {name: v.round for name, v in variants.items()}
    contenders["gemm bf16"] = lambda: (gemm_rate(torch.bfloat16), 0.0)
    rates = interleave(contenders, rounds)
    gemm = wall(rates.pop("gemm bf16"))
    flops = 3 * forward_flops(build("seed"))
    base = wall(rates["eager, batch 128"])
    res = {"machine": machine_name(), "threads": torch.get_num_threads(), "rounds": rounds, "images": images,
           "gemm_bf16_gflops": median(gemm) / 1e9, "train_gflop_per_image": flops / 1e9, "variants": {}}
    print(f"bf16 GEMM {GEMM_LABEL}: {median(gemm) / 1e9:.0f} GFLOP/s; seed training {flops / 1e9:.3f} GFLOP/image")
    print("| seed training step, bf16 | img/s | img/CPU-s | vs eager batch 128 | % of bf16 GEMM |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rates.items():
        row = {"images_per_s": median(wall(r)), "images_per_cpu_s": median(cpu(r)),
               "vs_eager_128": paired_ratio(wall(r), base),
               "gemm_fraction": paired_ratio([x * flops for x in wall(r)], gemm),
               "compile_s": variants[name].compile_s}
        res["variants"][name] = row
        print(f"| {name} | {row['images_per_s']:.0f} | {row['images_per_cpu_s']:.0f} | {row['vs_eager_128']:.2f}x "
              f"| {row['gemm_fraction']:.0%} |")
    for name, v in variants.items():
        if v.compile_s is not None:
            print(f"{name}: first (compiling) round took {v.compile_s:.1f} s")
    print(f"# {load()}")
    write_json(args.json, res)


if __name__ == "__main__":
    run_main(main)
