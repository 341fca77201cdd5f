"""Seed training throughput: autocolor (bf16, fp32) vs Keras 3 + TensorFlow-CPU, interleaved in one run.

Also: the whole ``autocolor train`` command on a CIFAR-10 subset (its metrics.jsonl ``images_per_s`` and the
command's wall time), and the fraction of the measured 2048^3 bf16 GEMM rate that the bf16 training step reaches
(training FLOPs = 3 x the counted forward convolution FLOPs).

    python benchmarks/train_throughput.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ROOT,
    Rate,
    cpu,
    forward_flops,
    gemm_rate,
    interleave,
    keras_rate,
    load,
    median,
    omp_note,
    paired_ratio,
    start_keras,
    timed,
    wall,
    write_json,
)

from autocolor.data import Split, epoch_batches, locate  # noqa: E402
from autocolor.errors import AutocolorError, run_main  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.runtime import machine_name  # noqa: E402
from autocolor.train import train_step  # noqa: E402


class TorchTrainer:
    """The step ``autocolor.train`` runs (uint8 batch -> Lab -> autocast forward -> loss -> AdamW), on one model."""

    def __init__(self, precision: str, batch: int, steps: int, model: str = "seed") -> None:
        torch.manual_seed(0)
        self.precision, self.batch, self.steps = precision, batch, steps
        self.device = torch.device("cpu")
        self.model = build(model).to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(0)
        n = batch * steps
        self.split = Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
                           torch.zeros(n, dtype=torch.long))
        self.epoch = 0
        self.round()  # warm-up: oneDNN primitive creation, allocator

    def round(self) -> Rate:
        """Images per wall second and per CPU second over one pass of ``steps`` batches."""
        rate = timed(self._epoch, self.steps * self.batch)
        self.epoch += 1
        return rate

    def _epoch(self) -> None:
        for imgs, _ in epoch_batches(self.split, self.batch, 0, self.epoch):
            loss = train_step(self.model, self.model, self.opt, imgs, self.device, self.precision)
        float(loss.detach())


def command_throughput(images: int, batch: int, precision: str, threads: int) -> dict | None:
    """``autocolor train --model seed --epochs 1 --max-images N``: metrics.jsonl images_per_s and wall time."""
    try:
        data = locate(None, download=False)
    except AutocolorError:
        for cand in (ROOT.parent / "shared" / "cifar10", Path("/work/shared/cifar10")):
            if (cand / "cifar-10-batches-py").is_dir():
                data = cand
                break
        else:
            print("# whole-command measurement skipped: CIFAR-10 not found", file=sys.stderr)
            return None
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "autocolor", "train", "--model", "seed", "--epochs", "1", "--max-images",
               str(images), "--batch-size", str(batch), "--precision", precision, "--device", "cpu",
               "--out", tmp, "--data", str(data)]
        t0 = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - t0
        rec = json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[-1])
    trained = images // batch * batch
    return {"command": " ".join(["autocolor", *cmd[3:-4], "--out", "TMP", "--data", "CIFAR"]), "images": trained,
            "images_per_s": rec["images_per_s"], "wall_s": wall, "wall_images_per_s": trained / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="batches per contender per round")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and TensorFlow (default: torch's)")
    ap.add_argument("--command-images", type=int, default=None, help="training images for the whole-command run")
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--no-command", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    steps = args.steps or (2 if args.quick else 8)
    cmd_images = args.command_images or (256 if args.quick else 5120)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"# {machine_name()}; torch {torch.__version__}; batch {args.batch}; {rounds} rounds x {steps} steps; "
          f"{omp_note()}; {load()}")

    train_flops = 3 * forward_flops(build("seed"))
    keras = start_keras(args.batch, threads, not args.no_keras)
    bf16, fp32 = TorchTrainer("bf16", args.batch, steps), TorchTrainer("fp32", args.batch, steps)
    contenders = {"autocolor bf16": bf16.round, "autocolor fp32": fp32.round,
                  "gemm bf16": lambda: (gemm_rate(torch.bfloat16), 0.0)}
    if keras:
        keras.run("train", steps)  # warm-up
        contenders["keras/tf fp32"] = lambda: keras_rate(keras.run("train", steps))
    try:
        rates = interleave(contenders, rounds)
    finally:
        if keras:
            keras.close()
    cmd = None if args.no_command else command_throughput(cmd_images, args.batch, "auto", threads)
    gemm = wall(rates.pop("gemm bf16"))
    step_flops = [r * train_flops for r in wall(rates["autocolor bf16"])]
    res = {"machine": machine_name(), "load": load(), "omp": omp_note(), "threads": threads, "batch": args.batch,
           "rounds": rounds, "steps": steps, "train_gflop_per_image": train_flops / 1e9,
           "gemm_bf16_gflops": median(gemm) / 1e9,
           "images_per_s": {k: median(wall(v)) for k, v in rates.items()},
           "images_per_cpu_s": {k: median(cpu(v)) for k, v in rates.items()}, "per_round": rates,
           "gemm_fraction_bf16_step": paired_ratio(step_flops, gemm), "command": cmd}
    if keras:
        k = rates["keras/tf fp32"]
        ours = ("autocolor bf16", "autocolor fp32")
        res["ratio_vs_keras"] = {n: paired_ratio(wall(rates[n]), wall(k)) for n in ours}
        res["cpu_ratio_vs_keras"] = {n: paired_ratio(cpu(rates[n]), cpu(k)) for n in ours}
        if cmd:
            res["ratio_vs_keras"]["autocolor train command (metrics images_per_s)"] = (
                cmd["images_per_s"] / median(wall(k)))
            res["ratio_vs_keras"]["autocolor train command (wall, incl. start-up + validation)"] = (
                cmd["wall_images_per_s"] / median(wall(k)))

    print(f"training FLOPs per 32x32 image: {train_flops / 1e9:.3f} GFLOP (3 x forward convolutions)")
    for name, rate in res["images_per_s"].items():
        print(f"{name:<18} {rate:8.0f} img/s, {res['images_per_cpu_s'][name]:6.0f} img/CPU-s  "
              f"(rounds: {', '.join(f'{r:.0f}' for r in wall(rates[name]))})")
    if cmd:
        print(f"{cmd['command']}: {cmd['images_per_s']:.0f} img/s in its training loop (metrics.jsonl); "
              f"{cmd['wall_images_per_s']:.0f} img/s over the whole command ({cmd['wall_s']:.1f} s wall)")
    for name, ratio in res.get("ratio_vs_keras", {}).items():
        print(f"ratio {name} / keras: {ratio:.2f}x")
    for name, ratio in res.get("cpu_ratio_vs_keras", {}).items():
        print(f"ratio per CPU-second {name} / keras: {ratio:.2f}x")
    print(f"bf16 GEMM {GEMM_LABEL}: {median(gemm) / 1e9:.0f} GFLOP/s; bf16 training step reaches "
          f"{res['gemm_fraction_bf16_step']:.0%} of it (paired per round)")
    print(f"# {load()}")
    write_json(args.json, res)


GEMM_LABEL = "2048x2048x2048"

if __name__ == "__main__":
    run_main(main)
