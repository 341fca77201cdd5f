"""Does bf16 cost quality? Train the same recipe in fp32 and bf16, score both on the full test set.

Usage: python benchmarks/precision_quality.py [--model seed-lab] [--epochs 2] [--max-images 10000]
Prints a markdown table with both test PSNRs and their difference (target: within 0.05 dB).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autocolor.errors import positive_int, run_main
from autocolor.evaluate import evaluate
from autocolor.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="seed-lab")
    ap.add_argument("--epochs", type=positive_int, default=2)
    ap.add_argument("--max-images", type=positive_int, default=10000)
    ap.add_argument("--out", type=Path, default=Path("runs/precision"))
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    results = {}
    for precision in ("fp32", "bf16"):
        out = args.out / precision
        cfg = TrainConfig(model=args.model, epochs=args.epochs, max_images=args.max_images, precision=precision,
                          device="cpu", out=str(out), data=args.data, command="benchmarks/precision_quality.py",
                          overwrite=True)  # this script's own folders: a rerun replaces them
        train(cfg, log=lambda *_: None)
        res = evaluate(out, data=args.data, device="cpu", progress=False)
        seconds = json.loads((out / "model.json").read_text())["training"]["seconds"]
        results[precision] = (res["psnr"], res["ssim"], seconds)
    rows = ["| training precision | test PSNR (dB) | test SSIM | training seconds |", "|---|---|---|---|"]
    rows += [f"| {p} | {v[0]:.3f} | {v[1]:.4f} | {v[2]:.0f} |" for p, v in results.items()]
    diff = results["bf16"][0] - results["fp32"][0]
    rows.append(f"\n{args.model}, {args.epochs} epochs on {args.max_images} training images, same seed; evaluated "
                f"in fp32 on the 10,000 test images. PSNR difference bf16 - fp32: {diff:+.3f} dB.")
    print("\n".join(rows))


if __name__ == "__main__":
    run_main(main)
