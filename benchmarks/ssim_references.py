"""What does SSIM reward? Reference colourings built from the true chroma, scored beside the grey input.

Usage: python benchmarks/ssim_references.py [--split val] [--data DIR] [--model NAME|RUN_DIR ...]
Each row keeps the true L* and replaces a*b* by: the truth scaled by f (right hue, weaker colour); the truth
averaged over k x k blocks (right colour, coarser detail; bilinear back to full size); the image's mean a*b*
(one colour cast per image). Scored as ``evaluate`` scores (8-bit RGB, per-image PSNR and SSIM, averaged).
A model's SSIM can be read against these rows: which kind of right colour buys how much SSIM.

``--model`` adds, per model: its own a*b* (its card's test-time views, bf16 where ``evaluate`` uses it); the same
a*b* through a guided filter with L* as the guide (He et al. 2010; radius 1, eps 1e-3: chroma edges pulled onto
lightness edges, a decoding that needs no truth); and two oracle bounds that look at the truth image by image:
the better of the model and the grey input, and the best of the model's a*b* scaled by each factor in
``ORACLE_SCALES``. No decoding that only rescales the model's a*b* per image can score above the second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from autocolor.colour import lab_and_input, lab_from, to_float, to_uint8
from autocolor.data import load_split
from autocolor.errors import run_main
from autocolor.metrics import psnr, ssim
from autocolor.runtime import pick_precision
from autocolor.weights import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import chroma_all  # noqa: E402

ORACLE_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def references(ab: torch.Tensor) -> dict[str, torch.Tensor]:
    """Name -> a*b* derived from the true ``ab`` (N, 2, H, W)."""
    refs = {"grey input": torch.zeros_like(ab)}
    refs.update({f"truth x {f:g}": ab * f for f in (0.25, 0.5, 0.75)})
    refs.update({f"truth in {k}x{k} blocks": F.interpolate(F.avg_pool2d(ab, k), scale_factor=k, mode="bilinear")
                 for k in (2, 4, 8)})
    refs["image-mean a*b*"] = ab.mean((2, 3), keepdim=True).expand_as(ab)
    refs["truth"] = ab
    return refs


def scores(images: torch.Tensor, L: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (SSIM, PSNR) of the 8-bit image rebuilt from ``L`` and ``ab``, as ``evaluate`` scores them."""
    out = to_uint8(lab_from(L, ab))
    return ssim(out, images), psnr(out, images)


def model_ab(spec: str, images: torch.Tensor) -> torch.Tensor:
    """The a*b* that ``evaluate`` decodes for ``spec`` on ``images`` (card's views and decoding, its precision)."""
    model, _ = load_model(spec, "cpu", fuse=True)
    return chroma_all(model, images, pick_precision("auto", torch.device("cpu")))[1]


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over (2r + 1)^2 windows, mirrored borders."""
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="reflect"), 2 * r + 1, 1)


def guided_filter(guide: torch.Tensor, x: torch.Tensor, r: int = 1, eps: float = 1e-3) -> torch.Tensor:
    """He et al.'s guided filter: ``x`` made locally linear in the one-channel ``guide`` (N, 1, H, W)."""
    mg, mx = box(guide, r), box(x, r)
    a = (box(guide * x, r) - mg * mx) / (box(guide * guide, r) - mg * mg + eps)
    return box(a, r) * guide + box(mx - a * mg, r)


def model_rows(name: str, images: torch.Tensor, L: torch.Tensor,
               ab: torch.Tensor) -> tuple[list[tuple[str, float, float]], str]:
    """(row, mean SSIM, mean PSNR) for a model's ``ab``, its guided filtering and the two per-image oracle bounds
    on it; and a line on the spread of its per-image SSIM."""
    per_scale = [scores(images, L, ab * f) for f in ORACLE_SCALES]
    grey_s, grey_p = per_scale[ORACLE_SCALES.index(0.0)]
    own_s, own_p = per_scale[ORACLE_SCALES.index(1.0)]
    pick = own_s >= grey_s
    ssims, psnrs = torch.stack([s for s, _ in per_scale]), torch.stack([p for _, p in per_scale])
    best = ssims.argmax(0, keepdim=True)
    guided_s, guided_p = scores(images, L, guided_filter(L, ab))
    spread = (f"`{name}` per image: median SSIM {own_s.median().item():.4f}, {(own_s >= 0.95).float().mean():.1%} "
              f"of the images at 0.95 or above, {(own_s < grey_s).float().mean():.1%} below the grey input")
    return [(f"`{name}`", own_s.mean().item(), own_p.mean().item()),
            (f"`{name}`, guided filter on L*", guided_s.mean().item(), guided_p.mean().item()),
            (f"`{name}` or grey, per image, whichever scores higher (oracle)",
             torch.where(pick, own_s, grey_s).mean().item(), torch.where(pick, own_p, grey_p).mean().item()),
            (f"`{name}` x the best of {len(ORACLE_SCALES)} scales 0..3, per image (oracle)",
             ssims.gather(0, best).mean().item(), psnrs.gather(0, best).mean().item())], spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="val")
    ap.add_argument("--data", default=None)
    ap.add_argument("--model", action="append", default=[], metavar="NAME|RUN_DIR")
    args = ap.parse_args()
    images = load_split(args.split, args.data).images
    lab, L = lab_and_input(to_float(images))
    print(f"{args.split} split, {len(images)} images")
    print("| a*b* | SSIM | PSNR (dB) |")
    print("|---|---:|---:|")
    for name, ab in references(lab[:, 1:]).items():
        s, p = scores(images, L, ab)
        print(f"| {name} | {s.mean().item():.4f} | {p.mean().item():.2f} |")
    spreads = []
    for spec in args.model:
        rows, spread = model_rows(spec, images, L, model_ab(spec, images))
        spreads.append(spread)
        for name, s, p in rows:
            print(f"| {name} | {s:.4f} | {p:.2f} |")
    if spreads:
        print("\n" + "\n".join(spreads))


if __name__ == "__main__":
    run_main(main)
