"""Pick the default model's width and objective by measurement: validation PSNR per CPU second.

Usage: python benchmarks/sweep_default.py [--epochs 2] [--max-images 20000] [--shift 0] [--out runs/sweep]
       [--only LABEL ...]
Each candidate trains with the same recipe and budget on the training split; only the held-out
validation split is scored (never the test set). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autocolor.errors import positive_int, run_main
from autocolor.models import build, count_params
from autocolor.train import TrainConfig, train

CANDIDATES = {
    "unet w32 psnr": ("unet", {"widths": [32, 64, 128, 256], "objective": "psnr"}),
    "unet w32 mse": ("unet", {"widths": [32, 64, 128, 256], "objective": "mse"}),
    "unet w24 psnr": ("unet", {"widths": [24, 48, 96, 192], "objective": "psnr"}),
    "unet w48 psnr": ("unet", {"widths": [48, 96, 192, 384], "objective": "psnr"}),
    "unet s2d w64 psnr": ("unet", {"widths": [64, 128, 256], "objective": "psnr", "stem": 2}),
    "unet s2d w48 psnr": ("unet", {"widths": [48, 96, 192, 384], "objective": "psnr", "stem": 2}),
    "seed-lab": ("seed-lab", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=positive_int, default=2)
    ap.add_argument("--max-images", type=positive_int, default=20000)
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--shift", type=int, default=0, help="random translations of up to N pixels (train --shift)")
    args = ap.parse_args()
    rows = ["| candidate | params | val PSNR (dB) | grey (dB) | seconds | dB over grey per minute |",
            "|---|---|---|---|---|---|"]
    for label, (name, config) in CANDIDATES.items():
        if args.only and label not in args.only:
            continue
        out = args.out / label.replace(" ", "-")
        cfg = TrainConfig(model=name, model_config=config, epochs=args.epochs, max_images=args.max_images,
                          out=str(out), data=args.data, shift=args.shift, command="benchmarks/sweep_default.py",
                          overwrite=True)  # this script's own folders: a rerun replaces them
        train(cfg, log=lambda *_: None)
        rec = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
        gain = (rec["val_psnr"] - rec["val_psnr_grey"]) / (rec["seconds"] / 60)
        rows.append(f"| {label} | {count_params(build(name, **config)):,} | {rec['val_psnr']:.3f} | "
                    f"{rec['val_psnr_grey']:.3f} | {rec['seconds']:.0f} | {gain:+.3f} |")
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    run_main(main)
