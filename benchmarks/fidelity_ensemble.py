"""How much SSIM does averaging fidelity networks buy? A bound on what variance reduction can give `default`.

Usage: python benchmarks/fidelity_ensemble.py RUN [RUN ...] [--split val] [--data DIR] [--max-images N]
Each RUN (a bundled name or a run folder of a ``unet`` fidelity model) predicts a*b* once, with the views of its
card; every subset of two or more runs is then scored with the mean of its members' a*b*. Scored as ``evaluate``
scores: 8-bit RGB, per-image PSNR and SSIM averaged, bf16 inference where the CPU has it.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from autocolor.colour import to_uint8
from autocolor.data import load_split
from autocolor.inference import predict_all
from autocolor.metrics import psnr, ssim
from autocolor.runtime import pick_device, pick_precision
from autocolor.weights import load_model


def predictions(spec: str, images: torch.Tensor, precision: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(model, L, raw a*b* output) of fidelity run ``spec`` on ``images``."""
    model, card = load_model(spec, "cpu", fuse=True)
    if getattr(model, "output", "ab") != "ab":
        raise SystemExit(f"{spec}: a {card.get('architecture')} model; this script averages a*b* regressions only")
    Ls, raws = [], []
    for _, L, raw in predict_all(model, images, "cpu", precision):
        Ls.append(L)
        raws.append(raw.float())
    return model, torch.cat(Ls), torch.cat(raws)


def scores(model: torch.nn.Module, L: torch.Tensor, raw: torch.Tensor, images: torch.Tensor) -> tuple[float, float]:
    """Mean per-image (SSIM, PSNR) of the decoded, 8-bit colourings."""
    out = torch.cat([to_uint8(model.to_rgb(L[i:i + 500], raw[i:i + 500])) for i in range(0, len(L), 500)])
    return ssim(out, images).mean().item(), psnr(out, images).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--split", default="val")
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-images", type=int, default=None)
    args = ap.parse_args()
    images = load_split(args.split, args.data).images[:args.max_images]
    precision = pick_precision("auto", pick_device("cpu"))
    t0 = time.perf_counter()
    preds = {run: predictions(run, images, precision) for run in args.runs}
    model, L, _ = preds[args.runs[0]]
    print(f"{args.split} split, {len(images)} images, {precision}; predicted in {time.perf_counter() - t0:.0f} s")
    print("| runs averaged | SSIM | PSNR (dB) |")
    print("|---|---:|---:|")
    for k in range(1, len(args.runs) + 1):
        for subset in itertools.combinations(args.runs, k):
            raw = torch.stack([preds[r][2] for r in subset]).mean(0)
            s, p = scores(model, L, raw, images)
            print(f"| {' + '.join(subset)} | {s:.5f} | {p:.3f} |", flush=True)


if __name__ == "__main__":
    main()
