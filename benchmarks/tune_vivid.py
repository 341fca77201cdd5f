"""Choose the vivid model's annealed-mean temperature on the validation split (never the test set).

Usage: python benchmarks/tune_vivid.py RUN_DIR [--temperatures 0.2 0.3 ...] [--write]
Picks the temperature with the best PSNR among those whose |colourfulness - truth| <= 2.0 (else the
smallest colourfulness gap); --write stores it in the run's model card, which `scripts/bundle.py` copies.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from autocolor.evaluate import evaluate
from autocolor.weights import resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3, 0.38, 0.5])
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = []
    for t in args.temperatures:
        r = evaluate(args.run, split="val", max_images=args.max_images, data=args.data, progress=False, temperature=t)
        rows.append((t, r["psnr"], r["delta_colorfulness"], r["colorfulness"], r["grey_baseline"]["psnr"]))
        print(f"| {t:.2f} | {r['psnr']:.3f} | {r['colorfulness']:.2f} | {r['delta_colorfulness']:.2f} |", flush=True)
    ok = [row for row in rows if row[2] <= 2.0]
    best = max(ok, key=lambda row: row[1]) if ok else min(rows, key=lambda row: row[2])
    print(f"chosen temperature {best[0]} (validation PSNR {best[1]:.3f}, delta colourfulness {best[2]:.2f}; "
          f"grey PSNR {best[4]:.3f})")
    if args.write:
        card_path = Path(resolve(args.run)).with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["config"]["temperature"] = best[0]
        card["temperature_selection"] = {"split": "val", "rule": "best PSNR with delta colourfulness <= 2",
                                         "command": shlex.join(["python", "benchmarks/tune_vivid.py", *sys.argv[1:]]),
                                         "table": [dict(zip(["temperature", "psnr", "delta_colorfulness",
                                                             "colorfulness", "grey_psnr"], r, strict=True))
                                                   for r in rows]}
        card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
