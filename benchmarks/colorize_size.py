"""Pick `autocolor colorize --size`: score the working resolution on real photos (the shipped samples).

Each sample is turned grey, colorized with the long side of the model's input at each size, and compared
with its colour original (PSNR, SSIM, ab-error AuC, colourfulness). The grey row is the do-nothing baseline.

    python benchmarks/colorize_size.py MODEL [MODEL ...]      # bundled name, run dir, .safetensors or checkpoint.pt
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image

from autocolor import metrics
from autocolor.colorize import Colorizer, sample_paths
from autocolor.models import build

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


def main(specs: list[str]) -> None:
    truth = [np.asarray(Image.open(p).convert("RGB")) for p in sample_paths()]
    print(f"{len(truth)} photos: " + ", ".join(p.name for p in sample_paths()) +
          f"; ground-truth colourfulness {np.mean([metrics.colourfulness(torch.from_numpy(t.copy()).permute(2, 0, 1)[None]).item() for t in truth]):.2f}")  # noqa: E501
    for spec in specs:
        col = load(spec)
        print(f"\n{spec}\n{'size':>6} {'PSNR':>7} {'SSIM':>6} {'AuC':>6} {'colourf':>8}")
        print("{:>6} {:7.2f} {:6.3f} {:6.3f} {:8.2f}".format("grey", *score(col, truth, saturation=0.0)))
        for size in SIZES:
            col.size = size
            print("{:>6} {:7.2f} {:6.3f} {:6.3f} {:8.2f}".format(size, *score(col, truth)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["default"])
