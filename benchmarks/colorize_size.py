"""Pick `autocolor colorize --size`: score the working resolution on real photos (the shipped samples).

Each sample is turned grey, colorized with the long side of the model's input at each size, and compared
with its colour original (PSNR, SSIM, ab-error AuC, colourfulness). The grey row is the do-nothing baseline.

    python benchmarks/colorize_size.py MODEL [MODEL ...] [--write]   # bundled name, run dir, .safetensors or .pt

--write stores the best size by PSNR (``colorize_size``) and the whole PSNR column
(``colorize_size_selection``) in each model's card; `autocolor colorize` then works at that size.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np
import torch
from PIL import Image

from autocolor import metrics
from autocolor.colorize import Colorizer, sample_paths
from autocolor.errors import run_main
from autocolor.models import build
from autocolor.weights import load_card, resolve, write_card

SIZES = [16, 32, 48, 64, 96, 128, 192, 256, 384]


def load(spec: str) -> Colorizer:
    if spec.endswith(".pt"):  # a training checkpoint (state dict + config), for runs still in progress
        ck = torch.load(spec, map_location="cpu", weights_only=True)
        model = build(ck["config"]["model"], **ck["config"].get("model_config", {}))
        model.load_state_dict(ck["model"])
        return Colorizer(model.eval())
    return Colorizer.load(spec, device="cpu")


def score(col: Colorizer, truth: list[np.ndarray], saturation: float = 1.0) -> list[float]:
    rows = []
    for path, t in zip(sample_paths(), truth, strict=True):
        a = torch.from_numpy(np.array(col.colorize(path, saturation=saturation))).permute(2, 0, 1)[None]
        b = torch.from_numpy(t.copy()).permute(2, 0, 1)[None]
        rows.append([metrics.psnr(a, b).item(), metrics.ssim(a, b).item(), metrics.auc(metrics.ab_error_cdf(a, b)),
                     metrics.colourfulness(a).item()])
    return np.mean(rows, axis=0).tolist()


def write_choice(spec: str, psnr_by_size: dict[int, float]) -> int:
    """Store the best size by PSNR and the PSNR of every size in ``spec``'s card; return that size."""
    best = max(psnr_by_size, key=psnr_by_size.get)
    weights = resolve(spec)
    card = load_card(weights)
    card["colorize_size"] = best
    card["colorize_size_selection"] = {
        "command": shlex.join(["python", "benchmarks/colorize_size.py", spec]),
        "data": f"the {len(sample_paths())} sample photos in autocolor/samples", "rule": "best PSNR",
        "psnr_by_size": {str(k): round(v, 2) for k, v in psnr_by_size.items()}}
    write_card(weights, card)
    return best


def main(specs: list[str], write: bool = False) -> None:
    truth = [np.asarray(Image.open(p).convert("RGB")) for p in sample_paths()]
    print(f"{len(truth)} photos: " + ", ".join(p.name for p in sample_paths()) +
          f"; ground-truth colourfulness {np.mean([metrics.colourfulness(torch.from_numpy(t.copy()).permute(2, 0, 1)[None]).item() for t in truth]):.2f}")  # noqa: E501
    for spec in specs:
        col = load(spec)
        print(f"\n{spec}\n{'size':>6} {'PSNR':>7} {'SSIM':>6} {'AuC':>6} {'colourf':>8}")
        print("{:>6} {:7.2f} {:6.3f} {:6.3f} {:8.2f}".format("grey", *score(col, truth, saturation=0.0)))
        psnr_by_size = {}
        for size in SIZES:
            col.size = size
            row = score(col, truth)
            psnr_by_size[size] = row[0]
            print("{:>6} {:7.2f} {:6.3f} {:6.3f} {:8.2f}".format(size, *row), flush=True)
        if write:
            print(f"wrote colorize_size {write_choice(spec, psnr_by_size)} to the card of {spec}")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["default"])
    ap.add_argument("--write", action="store_true", help="store the best size in each model's card")
    args = ap.parse_args(sys.argv[1:])
    main(args.models, args.write)


if __name__ == "__main__":
    run_main(cli)
