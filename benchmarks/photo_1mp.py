"""Colorizing a 1-megapixel greyscale photo end to end: JPEG decode, model, upsample, Lab -> sRGB, JPEG encode.

Uses the public ``Colorizer`` API (``autocolor.colorize``) with the torch model and with the ONNX Runtime
backend (``autocolor.export.onnx_colorizer``), interleaved. The network is a seed-lab with fresh weights (speed does
not depend on the weight values); the photo is a bundled sample resized to 1155x866 (1.0 MP), saved as a
greyscale JPEG. ``--profile`` adds a torch.profiler summary of where the torch path spends its time.

    python benchmarks/photo_1mp.py [--quick] [--profile] [--json FILE] [--bundled NAME ...]

``--bundled default vivid`` also times those bundled models as ``autocolor colorize`` runs them (their trained
weights, their card's working size and decoding), interleaved with the rest.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, median, write_json  # noqa: E402

from autocolor.colorize import DEFAULT_SIZE, Colorizer, sample_paths  # noqa: E402
from autocolor.errors import run_main  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.runtime import machine_name  # noqa: E402

SIZE = (1155, 866)  # 1,000,230 pixels, 4:3


def grey_jpeg() -> bytes:
    """A bundled sample photo as a 1 MP greyscale JPEG (what a user would hand to ``autocolor colorize``)."""
    with Image.open(max(sample_paths(), key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])) as im:
        grey = im.convert("L").resize(SIZE, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    grey.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def end_to_end(colorizer: Colorizer, data: bytes) -> dict[str, float]:
    """Seconds of each stage for one photo: decode, colorize (model + colour maths), encode."""
    t0 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        photo = colorizer.photo(im)
    t1 = time.perf_counter()
    out = colorizer.colorize(photo)
    t2 = time.perf_counter()
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=92)
    t3 = time.perf_counter()
    return {"decode": t1 - t0, "colorize": t2 - t1, "encode": t3 - t2, "total": t3 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE, help="working resolution (long side)")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler summary of the torch path")
    ap.add_argument("--json", default=None)
    ap.add_argument("--bundled", nargs="*", default=[], metavar="NAME",
                    help="also time these bundled models at their own working size")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 7)
    print(f"# {machine_name()}; torch {torch.__version__}; seed-lab; photo {SIZE[0]}x{SIZE[1]}; "
          f"working size {args.size}; {rounds} rounds; {load()}")
    data = grey_jpeg()
    torch.manual_seed(0)
    model = build("seed-lab").eval()
    backends = {"autocolor torch fp32": Colorizer(model=model, size=args.size, precision="fp32")}
    default = Colorizer(model=model, size=args.size)  # precision "auto": bf16 where the CPU has it natively
    if default.precision != "fp32":
        backends[f"autocolor torch {default.precision} (default)"] = default
    tmp = tempfile.TemporaryDirectory()
    if not args.no_onnx:
        from autocolor.export import export_onnx, onnx_colorizer

        backends["autocolor onnxruntime"] = onnx_colorizer(export_onnx(model, Path(tmp.name) / "m.onnx"),
                                                           size=args.size)
    for name in args.bundled:
        col = Colorizer.load(name)
        backends[f"bundled {name} (size {col.size})"] = col
    for col in backends.values():
        end_to_end(col, data)  # warm-up
    times: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    names = list(backends)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(end_to_end(backends[name], data))
    tmp.cleanup()
    res = {"machine": machine_name(), "load": load(), "pixels": SIZE[0] * SIZE[1], "size": args.size,
           "rounds": rounds, "seconds": {}}
    for name, runs in times.items():
        stages = {k: median([t[k] for t in runs]) for k in runs[0]}
        per_round = ", ".join(f"{t['total']:.3f}" for t in runs)
        res["seconds"][name] = stages
        print(f"{name:<22} {stages['total']:.3f} s per 1 MP photo (median; decode {stages['decode']:.3f}, "
              f"colorize {stages['colorize']:.3f}, encode {stages['encode']:.3f})  "
              f"rounds: {per_round}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            end_to_end(backends["autocolor torch fp32"], data)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        res["profile"] = table
        print(table)
    print(f"# {load()}")
    write_json(args.json, res)


if __name__ == "__main__":
    run_main(main)
