"""Does bf16 cost quality? Train the same recipe in fp32 and bf16, score both on the full test set.

Usage: python benchmarks/precision_quality.py [--model seed-lab] [--epochs 2] [--max-images 10000] [--json FILE]
Prints a markdown table with both test PSNRs and their difference (target: within 0.05 dB); both models are
scored in fp32, so only the training precision differs. ``--json`` keeps the figures with the machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from autocolor.errors import AutocolorError, positive_int, run_main
from autocolor.evaluate import evaluate
from autocolor.files import atomic_write_bytes, why_unwritable
from autocolor.runtime import machine_name
from autocolor.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="seed-lab")
    ap.add_argument("--epochs", type=positive_int, default=2)
    ap.add_argument("--max-images", type=positive_int, default=10000)
    ap.add_argument("--out", type=Path, default=Path("runs/precision"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    why = args.json and ("is a folder; give a file name" if args.json.is_dir() else why_unwritable(args.json))
    if why:  # found now, not after both trainings
        raise AutocolorError(f"--json {args.json}: {why}")
    results = {}
    for precision in ("fp32", "bf16"):
        out = args.out / precision
        cfg = TrainConfig(model=args.model, epochs=args.epochs, max_images=args.max_images, precision=precision,
                          device="cpu", out=str(out), data=args.data, command="benchmarks/precision_quality.py",
                          overwrite=True)  # this script's own folders: a rerun replaces them
        train(cfg, log=lambda *_: None)
        res = evaluate(out, data=args.data, device="cpu", precision="fp32", progress=False)
        seconds = json.loads((out / "model.json").read_text())["training"]["seconds"]
        results[precision] = (res["psnr"], res["ssim"], seconds)
    rows = ["| training precision | test PSNR (dB) | test SSIM | training seconds |", "|---|---|---|---|"]
    rows += [f"| {p} | {v[0]:.4f} | {v[1]:.4f} | {v[2]:.0f} |" for p, v in results.items()]
    diff = results["bf16"][0] - results["fp32"][0]
    machine, when = machine_name(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows.append(f"\n{args.model}, {args.epochs} epochs on {args.max_images} training images, same seed; evaluated "
                f"in fp32 on the 10,000 test images. PSNR difference bf16 - fp32: {diff:+.4f} dB. "
                f"Machine: {machine}; {when}.")
    print("\n".join(rows))
    if args.json:
        record = {"command": "python benchmarks/precision_quality.py", "model": args.model, "epochs": args.epochs,
                  "max_images": args.max_images, "machine": machine, "measured_at": when,
                  "rows": {p: {"psnr": v[0], "ssim": v[1], "training_seconds": v[2]} for p, v in results.items()},
                  "psnr_bf16_minus_fp32": diff}
        atomic_write_bytes(args.json, (json.dumps(record, indent=2) + "\n").encode())


if __name__ == "__main__":
    run_main(main)
