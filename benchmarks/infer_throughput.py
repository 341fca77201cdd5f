"""32x32 batch inference of the seed model: autocolor torch (fp32, bf16) vs Keras/TF vs ONNX Runtime, interleaved.

Every contender runs the network alone (grey input in memory -> raw output), batch 128, eval mode; the torch
rows use channels_last and ``torch.inference_mode``. ``autocolor fp32`` and ``autocolor bf16`` run the model as
trained (Conv -> BatchNorm -> ReLU -> pool); the ``BN folded`` rows run the copy that ``autocolor.fuse`` makes
(BatchNorm folded into the convolutions, max-pooling moved before ReLU), which is the model ``Colorizer``,
``autocolor colorize``/``evaluate``/``serve`` and ``load_model(..., fuse=True)`` use. Their default precision is
``auto`` (bf16 autocast where the CPU runs bf16 natively, as this one does; else fp32), so ``autocolor bf16 BN
folded`` is what users get without options here, and ``autocolor fp32 BN folded`` on CPUs without bf16.
``autocolor end-to-end bf16`` is ``colorize_batch`` (uint8 in, Lab conversions, uint8 out) on the folded model,
for reference. ``autocolor bf16 torch.compile`` is the unfolded model
through ``torch.compile`` with inductor freezing (BatchNorm folded, weights prepacked); its compile time is
reported apart.

    python benchmarks/infer_throughput.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Rate,
    cpu,
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

from autocolor.errors import run_main  # noqa: E402
from autocolor.fuse import fuse_for_inference  # noqa: E402
from autocolor.inference import colorize_batch  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.runtime import autocast, machine_name, pick_precision  # noqa: E402

CPU = torch.device("cpu")
FOLDED_FP32 = "autocolor fp32 BN folded"  # the default on CPUs without native bf16
FOLDED_BF16 = "autocolor bf16 BN folded"  # the default where the CPU has native bf16 (precision "auto")
DEFAULT_ROW = FOLDED_BF16 if pick_precision("auto", torch.device("cpu")) == "bf16" else FOLDED_FP32


def torch_runner(model: torch.nn.Module, L: torch.Tensor, batch: int, precision: str):
    """A callable: one pass over ``L`` in batches; returns images per second."""
    chunks = [c.contiguous(memory_format=torch.channels_last) for c in L.split(batch)]

    def run() -> Rate:
        def body() -> None:
            with torch.inference_mode(), autocast(CPU, precision):
                for c in chunks:
                    model(c)
        return timed(body, len(L))

    run()
    return run


def compiled_runner(model: torch.nn.Module, L: torch.Tensor, batch: int, precision: str):
    """``torch.compile`` (inductor, CPU, weights frozen as constants) of the eval model; returns (runner, info)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # constant-fold BatchNorm into the convolutions, prepack weights
    compiled = torch.compile(model)
    first = L[:batch].contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(CPU, precision):
        out = compiled(first).float()
        ref = model(first).float()
    info = {"compile_s": time.perf_counter() - t0, "max_abs_diff_vs_eager": float((out - ref).abs().max())}
    return torch_runner(compiled, L, batch, precision), info


def onnx_runner(model: torch.nn.Module, L: torch.Tensor, batch: int, folder: str):
    """ONNX Runtime (CPU provider, all graph optimisations) on the exported chroma path."""
    from autocolor.export import OnnxChroma, export_onnx

    session = OnnxChroma(export_onnx(model, Path(folder) / "seed.onnx"))
    chunks = [c.numpy() for c in L.split(batch)]

    def run() -> Rate:
        def body() -> None:
            for c in chunks:
                session.run(c)
        return timed(body, len(L))

    run()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="batches per contender per round")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and TensorFlow (default: torch's)")
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (about 10 s to compile)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    steps = args.steps or (2 if args.quick else 16)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {machine_name()}; torch {torch.__version__}; batch {args.batch}; {rounds} rounds x {steps} batches; "
          f"{omp_note()}; {load()}")
    torch.manual_seed(0)
    model = build("seed").eval()
    L = torch.rand(steps * args.batch, 1, 32, 32)
    images = torch.randint(0, 256, (steps * args.batch, 3, 32, 32), dtype=torch.uint8)
    cl = build("seed").eval().to(memory_format=torch.channels_last)
    cl.load_state_dict(model.state_dict())
    fused = fuse_for_inference(cl)  # the model the inference paths use
    contenders = {"autocolor fp32": torch_runner(cl, L, args.batch, "fp32"),
                  FOLDED_FP32: torch_runner(fused, L, args.batch, "fp32"),
                  "autocolor bf16": torch_runner(cl, L, args.batch, "bf16"),
                  FOLDED_BF16: torch_runner(fused, L, args.batch, "bf16")}

    def e2e() -> Rate:
        return timed(lambda: [colorize_batch(fused, b, CPU, "bf16") for b in images.split(args.batch)], len(images))

    contenders["autocolor end-to-end bf16"] = e2e
    compiled = None
    if not args.no_compile:
        try:
            contenders["autocolor bf16 torch.compile"], compiled = compiled_runner(cl, L, args.batch, "bf16")
        except Exception as exc:  # noqa: BLE001 - inductor needs a C++ compiler; report and go on
            print(f"# torch.compile skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    tmp = tempfile.TemporaryDirectory()
    keras = None
    try:
        if not args.no_onnx:
            contenders["onnxruntime fp32"] = onnx_runner(model, L, args.batch, tmp.name)
        keras = start_keras(args.batch, torch.get_num_threads(), not args.no_keras)
        if keras:
            keras.run("infer", steps)
            contenders["keras/tf fp32"] = lambda: keras_rate(keras.run("infer", steps))
        rates = interleave(contenders, rounds)
    finally:
        if keras:
            keras.close()
        tmp.cleanup()
    c = L[:args.batch].contiguous(memory_format=torch.channels_last)
    fold_diff = {}
    for precision in ("fp32", "bf16"):
        with torch.inference_mode(), autocast(CPU, precision):
            fold_diff[precision] = float((fused(c).float() - cl(c).float()).abs().max())
    res = {"machine": machine_name(), "load": load(), "omp": omp_note(), "threads": torch.get_num_threads(),
           "batch": args.batch, "rounds": rounds, "steps": steps, "default": DEFAULT_ROW,
           "fold_max_abs_diff": fold_diff,
           "images_per_s": {k: median(wall(v)) for k, v in rates.items()},
           "images_per_cpu_s": {k: median(cpu(v)) for k, v in rates.items()}, "per_round": rates,
           "compile": compiled}
    base = "keras/tf fp32" if "keras/tf fp32" in rates else None
    if base:
        res["ratio_vs_keras"] = {k: paired_ratio(wall(v), wall(rates[base])) for k, v in rates.items() if k != base}
        res["cpu_ratio_vs_keras"] = {k: paired_ratio(cpu(v), cpu(rates[base])) for k, v in rates.items()
                                     if k != base}
    for name, rate in res["images_per_s"].items():
        print(f"{name:<30} {rate:8.0f} img/s, {res['images_per_cpu_s'][name]:6.0f} img/CPU-s  "
              f"(rounds: {', '.join(f'{r:.0f}' for r in wall(rates[name]))})")
    for name, ratio in res.get("ratio_vs_keras", {}).items():
        print(f"ratio {name} / keras: {ratio:.2f}x (per CPU-second {res['cpu_ratio_vs_keras'][name]:.2f}x)")
    print(f"default: {DEFAULT_ROW}; folded vs unfolded output, max |diff|: {fold_diff['fp32']:.2e} (fp32), "
          f"{fold_diff['bf16']:.2e} (bf16)")
    if compiled:
        print(f"torch.compile: {compiled['compile_s']:.1f} s to compile (freezing), max |output - eager| "
              f"{compiled['max_abs_diff_vs_eager']:.2e} (bf16)")
    print(f"# {load()}")
    write_json(args.json, res)


if __name__ == "__main__":
    run_main(main)
