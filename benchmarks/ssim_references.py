"""What does SSIM reward? Reference colourings built from the true chroma, scored beside the grey input.

Usage: python benchmarks/ssim_references.py [--split val] [--data DIR]
Each row keeps the true L* and replaces a*b* by: the truth scaled by f (right hue, weaker colour); the truth
averaged over k x k blocks (right colour, coarser detail; bilinear back to full size); the image's mean a*b*
(one colour cast per image). Scored as ``evaluate`` scores (8-bit RGB, per-image PSNR and SSIM, averaged).
A model's SSIM can be read against these rows: which kind of right colour buys how much SSIM.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from autocolor.colour import lab_and_input, lab_from, to_float, to_uint8
from autocolor.data import load_split
from autocolor.metrics import psnr, ssim


def references(ab: torch.Tensor) -> dict[str, torch.Tensor]:
    """Name -> a*b* derived from the true ``ab`` (N, 2, H, W)."""
    refs = {"grey input": torch.zeros_like(ab)}
    refs.update({f"truth x {f:g}": ab * f for f in (0.25, 0.5, 0.75)})
    refs.update({f"truth in {k}x{k} blocks": F.interpolate(F.avg_pool2d(ab, k), scale_factor=k, mode="bilinear")
                 for k in (2, 4, 8)})
    refs["image-mean a*b*"] = ab.mean((2, 3), keepdim=True).expand_as(ab)
    refs["truth"] = ab
    return refs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="val")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    images = load_split(args.split, args.data).images
    lab, L = lab_and_input(to_float(images))
    print(f"{args.split} split, {len(images)} images")
    print("| a*b* | SSIM | PSNR (dB) |")
    print("|---|---:|---:|")
    for name, ab in references(lab[:, 1:]).items():
        out = to_uint8(lab_from(L, ab))
        print(f"| {name} | {ssim(out, images).mean().item():.4f} | {psnr(out, images).mean().item():.2f} |")


if __name__ == "__main__":
    main()
