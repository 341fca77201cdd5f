"""Choose the vivid model's decoding (temperature, calibration, colour boost) on the validation split.

Usage: python benchmarks/tune_vivid.py RUN_DIR [--temperatures 0.6 1.0] [--boosts 0 0.02 ...] [--calibrate]
       [--flip-tta] [--shift-tta 2] [--centred] [--mixes 1 0.7] [--max-images N] [--write]
Every (temperature, boost) pair, and each ``mix`` for a run trained with ``regress``, is scored on the validation
split (never the test set). The rule: the best
PSNR among pairs whose |colourfulness - truth| <= --max-delta (default 2.0, the issue's target; a smaller value
leaves a margin for the test set), else the smallest colourfulness gap. --write stores the
choice and the whole table in the run's model card, which `scripts/bundle.py` copies.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from autocolor.evaluate import evaluate
from autocolor.weights import load_card, resolve, write_card

KEYS = ["temperature", "boost", "mix", "psnr", "ssim", "colorfulness", "delta_colorfulness", "grey_psnr",
        "semantic_accuracy", "semantic_gap_closed"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.38, 0.6, 1.0])
    ap.add_argument("--boosts", type=float, nargs="+", default=[0.0])
    ap.add_argument("--calibrate", action="store_true", help="undo the class rebalancing before decoding")
    ap.add_argument("--flip-tta", action="store_true", help="average the bin logits with the mirrored input's")
    ap.add_argument("--shift-tta", type=int, default=0, metavar="S",
                    help="also average the views translated by S (even) pixels each way")
    ap.add_argument("--centred", action="store_true",
                    help="boost each image's colour contrast about its mean a*b* (boost_centred), not about grey")
    ap.add_argument("--mixes", type=float, nargs="+", default=None,
                    help="weights of the direct a*b* in the decoded mean (a run trained with regress > 0)")
    ap.add_argument("--max-delta", type=float, default=2.0, help="largest validation delta colourfulness allowed")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = []
    print("| temperature | boost | mix | PSNR | SSIM | colourfulness | delta | semantic acc. | gap closed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    options = {"flip_tta": args.flip_tta, "shift_tta": args.shift_tta, "boost_centred": args.centred}

    def overrides(mix: float | None) -> dict:
        return options if mix is None else {**options, "mix": mix}

    for mix in args.mixes or [None]:
        for t in args.temperatures:
            for b in args.boosts:
                r = evaluate(args.run, split="val", max_images=args.max_images, data=args.data, progress=False,
                             temperature=t, boost=b, calibrate=args.calibrate, overrides=overrides(mix))
                rows.append(dict(zip(KEYS, (t, b, mix, r["psnr"], r["ssim"], r["colorfulness"],
                                            r["delta_colorfulness"], r["grey_baseline"]["psnr"],
                                            r.get("semantic_accuracy"), r.get("semantic_gap_closed")), strict=True)))
                print(f"| {t:.2f} | {b:g} | {'-' if mix is None else f'{mix:g}'} | {r['psnr']:.3f} | {r['ssim']:.4f} | "
                      f"{r['colorfulness']:.2f} | {r['delta_colorfulness']:.2f} | {r.get('semantic_accuracy')} | "
                      f"{r.get('semantic_gap_closed')} |", flush=True)
    ok = [row for row in rows if row["delta_colorfulness"] <= args.max_delta]
    best = max(ok, key=lambda row: row["psnr"]) if ok else min(rows, key=lambda row: row["delta_colorfulness"])
    print(f"chosen temperature {best['temperature']}, boost {best['boost']}, mix {best['mix']} (validation PSNR "
          f"{best['psnr']:.3f}, delta colourfulness {best['delta_colorfulness']:.2f}; "
          f"grey PSNR {best['grey_psnr']:.3f})")
    if args.write:
        weights = resolve(args.run)
        card = load_card(weights)
        card["config"].update(temperature=best["temperature"], boost=best["boost"], calibrate=args.calibrate,
                              **overrides(best["mix"]))
        card["decoding_selection"] = {"split": "val", "rule": f"best PSNR with delta colourfulness <= {args.max_delta}",
                                      "command": shlex.join(["python", "benchmarks/tune_vivid.py", *sys.argv[1:]]),
                                      "table": rows}
        card.pop("temperature_selection", None)
        write_card(weights, card)


if __name__ == "__main__":
    main()
