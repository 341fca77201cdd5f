"""GPU figures: training and 32x32 inference images/s of `seed` and `default` (unet w32) on one CUDA GPU.

Each training contender runs the step ``autocolor.train`` runs (uint8 batch on the GPU -> Lab -> autocast
forward -> loss -> AdamW, channels_last, cudnn autotuning); inference runs the BatchNorm-folded model that
``Colorizer``/``evaluate`` use. Contenders are interleaved round by round; figures are medians of rounds, each
round timed between ``torch.cuda.synchronize()`` calls. Also: an 8192^3 bf16 GEMM for scale, and the fraction of
it that the bf16 training steps reach (3 x forward convolution FLOPs).

    python benchmarks/gpu_throughput.py [--quick] [--json FILE]

Needs a CUDA GPU; ``run_all.py --gpu FILE`` puts the JSON it writes into the README table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import forward_flops, interleave, median, write_json  # noqa: E402

from autocolor.errors import AutocolorError, run_main  # noqa: E402
from autocolor.fuse import fuse_for_inference  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.runtime import autocast  # noqa: E402
from autocolor.train import train_step  # noqa: E402

GPU = torch.device("cuda")
MODELS = {"seed": ("seed", {}), "default": ("unet", {"widths": [32, 64, 128, 256]})}


def _timed(fn, images: int) -> tuple[float, float]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return images / (time.perf_counter() - t0), 0.0


def trainer(arch: str, config: dict, precision: str, batch: int, steps: int):
    """A callable running ``steps`` training steps on random uint8 images; returns (img/s, 0)."""
    torch.manual_seed(0)
    model = build(arch, **config).to(GPU, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    imgs = torch.randint(0, 256, (steps, batch, 3, 32, 32), dtype=torch.uint8, device=GPU)

    def body() -> None:
        for i in range(steps):
            train_step(model, model, opt, imgs[i], GPU, precision)

    body()  # warm-up: cudnn autotuning, allocator
    return lambda: _timed(body, steps * batch)


def inferer(arch: str, config: dict, precision: str, batch: int, steps: int):
    """A callable running ``steps`` batches through the BN-folded eval model; returns (img/s, 0)."""
    torch.manual_seed(0)
    model = fuse_for_inference(build(arch, **config).eval().to(GPU, memory_format=torch.channels_last))
    L = torch.rand(steps, batch, 1, 32, 32, device=GPU).contiguous()

    def body() -> None:
        with torch.inference_mode(), autocast(GPU, precision):
            for i in range(steps):
                model(L[i].contiguous(memory_format=torch.channels_last))

    body()
    return lambda: _timed(body, steps * batch)


def gemm_tflops(n: int = 8192, reps: int = 10) -> float:
    a = torch.randn(n, n, device=GPU, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=GPU, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--batches", type=int, nargs="*", default=[128, 1024])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise AutocolorError("this benchmark needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    rounds = args.rounds or (2 if args.quick else 5)
    name = torch.cuda.get_device_name(0)
    print(f"# {name}; torch {torch.__version__}; cuda {torch.version.cuda}; cudnn {torch.backends.cudnn.version()}; "
          f"{rounds} rounds; batches {args.batches}", flush=True)
    contenders, meta = {}, {}
    for label, (arch, config) in MODELS.items():
        for batch in args.batches:
            steps = max(4, (2 if args.quick else 32) * 128 // batch)
            for precision in ("bf16", "fp32"):
                key = f"{label} train {precision} b{batch}"
                contenders[key] = trainer(arch, config, precision, batch, steps)
                meta[key] = {"model": label, "what": "train", "precision": precision, "batch": batch}
                key = f"{label} infer {precision} b{batch}"
                contenders[key] = inferer(arch, config, precision, batch, steps * 4)
                meta[key] = {"model": label, "what": "infer", "precision": precision, "batch": batch}
    rates = interleave(contenders, rounds)
    gemm = gemm_tflops()
    flops = {label: 3 * forward_flops(build(arch, **config)) for label, (arch, config) in MODELS.items()}
    rows = []
    for key, r in rates.items():
        ips = median([x[0] for x in r])
        row = {**meta[key], "images_per_s": ips, "rounds": [x[0] for x in r]}
        if row["what"] == "train":
            row["gemm_fraction"] = ips * flops[row["model"]] / (gemm * 1e12)
        rows.append(row)
        extra = f", {row['gemm_fraction']:.1%} of bf16 GEMM" if "gemm_fraction" in row else ""
        print(f"{key:<28} {ips:10.0f} img/s{extra}", flush=True)
    print(f"bf16 GEMM 8192^3: {gemm:.0f} TFLOP/s; training GFLOP/image: "
          + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in flops.items()))
    write_json(args.json, {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                           "rounds": rounds, "gemm_bf16_tflops": gemm,
                           "train_gflop_per_image": {k: v / 1e9 for k, v in flops.items()}, "rows": rows})


if __name__ == "__main__":
    run_main(main)
