"""How much would averaging several trained fidelity models gain? Validation PSNR and SSIM of each run and of means.

Usage: python benchmarks/ensemble.py RUN RUN [...] [--subsets] [--flip-tta] [--shift-tta S] [--split val]
       [--max-images N] [--data DIR]
Each RUN (a bundled name, run folder or .safetensors of an a*b* model) predicts a*b* for the validation images
(never the test set) with the given test-time views (default: each card's own); an ensemble averages its
members' a*b* and rebuilds RGB with the kept L*. Scored as ``autocolor evaluate`` scores: 8-bit output,
per-image PSNR and SSIM averaged, bf16 where the CPU has it. Printed: each run, then the mean of all of them, or
with --subsets every subset of two or more. An ensemble costs its members' training time together, so this
measures an upper bound for distillation, not a bundle candidate.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

from autocolor.colour import lab_from, to_uint8
from autocolor.data import load_split
from autocolor.errors import AutocolorError, run_main
from autocolor.metrics import psnr, ssim
from autocolor.runtime import pick_device, pick_precision
from autocolor.weights import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import chroma_all, positive_int  # noqa: E402


def chroma(run: str, images: torch.Tensor, precision: str, views: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, predicted a*b*) of the a*b* model ``run`` on ``images``, with test-time ``views`` overriding its card's."""
    model, card = load_model(run, fuse=True, overrides=views)
    if model.output != "ab":
        raise AutocolorError(f"{run}: a {card['architecture']} model; this script averages a*b* regressions only")
    return chroma_all(model, images, precision, desc=Path(run).name)


def scores(L: torch.Tensor, ab: torch.Tensor, images: torch.Tensor) -> tuple[float, float]:
    """Mean per-image (SSIM, PSNR) of the 8-bit colourings with lightness ``L`` and chroma ``ab``."""
    s = p = 0.0
    for i in range(0, len(L), 500):
        out = to_uint8(lab_from(L[i:i + 500], ab[i:i + 500]))
        s += float(ssim(out, images[i:i + 500]).sum())
        p += float(psnr(out, images[i:i + 500]).sum())
    return s / len(L), p / len(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--subsets", action="store_true", help="score every subset of two or more runs")
    ap.add_argument("--flip-tta", action="store_true", default=None)
    ap.add_argument("--shift-tta", type=int, default=None)
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-images", type=positive_int, default=None)
    args = ap.parse_args()
    views = {k: v for k, v in (("flip_tta", args.flip_tta), ("shift_tta", args.shift_tta)) if v is not None}
    images = load_split(args.split, args.data).images[:args.max_images]
    precision = pick_precision("auto", pick_device("cpu"))
    t0 = time.perf_counter()
    preds = {run: chroma(run, images, precision, views) for run in args.runs}
    L = preds[args.runs[0]][0]
    sizes = range(2, len(args.runs) + 1) if args.subsets else [len(args.runs)]
    groups = [(r,) for r in args.runs] + [g for k in sizes for g in itertools.combinations(args.runs, k)]
    print(f"{args.split} split, {len(images)} images, {precision}, views {views or 'from each card'}; "
          f"predicted in {time.perf_counter() - t0:.0f} s")
    print("| runs averaged | SSIM | PSNR (dB) |")
    print("|---|---:|---:|")
    results = {}
    for group in groups:
        results[group] = scores(L, torch.stack([preds[r][1] for r in group]).mean(0), images)
        print(f"| {' + '.join(group)} | {results[group][0]:.5f} | {results[group][1]:.3f} |", flush=True)
    if len(args.runs) > 1:
        best_ssim, best_psnr = (max(results[(r,)][i] for r in args.runs) for i in (0, 1))
        ssim_all, psnr_all = results[tuple(args.runs)]
        print(f"mean of all {len(args.runs)}: {psnr_all - best_psnr:+.3f} dB PSNR and {ssim_all - best_ssim:+.5f} "
              f"SSIM over the best member")


if __name__ == "__main__":
    run_main(main)
