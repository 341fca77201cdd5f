"""How much would averaging several trained fidelity models gain? Validation PSNR of each run and of their mean.

Usage: python benchmarks/ensemble.py RUN_DIR RUN_DIR [...] [--flip-tta] [--shift-tta S] [--data DIR]
Each run predicts a*b* for the 5,000 validation images (never the test set) with the given test-time views
(default: each card's own); the ensemble averages the members' a*b* and rebuilds RGB with the kept L*.
Scoring is ``autocolor evaluate``'s per-image PSNR on 8-bit output. An ensemble costs the members' training
time together, so this measures an upper bound for distillation, not a bundle candidate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from autocolor.colour import greyscale, lab_from, to_float, to_uint8
from autocolor.data import load_split
from autocolor.metrics import psnr
from autocolor.runtime import autocast, pick_precision
from autocolor.weights import load_model


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--flip-tta", action="store_true", default=None)
    ap.add_argument("--shift-tta", type=int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-images", type=int, default=None)
    args = ap.parse_args()
    views = {k: v for k, v in (("flip_tta", args.flip_tta), ("shift_tta", args.shift_tta)) if v is not None}
    models = [load_model(run, fuse=True, overrides=views)[0] for run in args.runs]
    images = load_split("val", args.data).images[:args.max_images]
    precision = pick_precision("auto", torch.device("cpu"))
    sums = torch.zeros(len(models) + 1, dtype=torch.float64)
    for start in range(0, len(images), 500):
        target = images[start:start + 500]
        L = greyscale(to_float(target)).contiguous(memory_format=torch.channels_last)
        chromas = []
        for model in models:
            with autocast(torch.device("cpu"), precision):
                raw = model(L)
            chromas.append(model.chroma(L, raw).float())
        for i, ab in enumerate([*chromas, torch.stack(chromas).mean(0)]):
            sums[i] += float(psnr(to_uint8(lab_from(L, ab)), target).sum())
    scores = (sums / len(images)).tolist()
    print(f"validation PSNR ({len(images)} images, {precision}, views {views or 'from each card'}):")
    for run, score in zip(args.runs, scores, strict=False):
        print(f"  {Path(run).name}: {score:.3f} dB")
    gain = scores[-1] - max(scores[:-1])
    print(f"  mean of the {len(models)}: {scores[-1]:.3f} dB ({gain:+.3f} over the best member)")


if __name__ == "__main__":
    main()
