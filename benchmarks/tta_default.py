"""Which test-time averaging should the default model use: none, mirrored, or mirrored and translated views?

Usage: python benchmarks/tta_default.py RUN_DIR [--write] [--apply-to RUN_DIR2]
Scores RUN_DIR on the validation split (never the test set) with each setting of ``flip_tta``/``shift_tta``;
--write keeps the best in RUN_DIR's model card, or with --apply-to in RUN_DIR2's card: use that for a
``--final-fit`` run, whose validation images were trained on and so cannot choose. `scripts/bundle.py`
copies the card's setting.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from autocolor.errors import run_main
from autocolor.evaluate import evaluate
from autocolor.weights import load_card, resolve, write_card

SETTINGS = [{"flip_tta": False, "shift_tta": 0}, {"flip_tta": True, "shift_tta": 0},
            {"flip_tta": True, "shift_tta": 1}, {"flip_tta": True, "shift_tta": 2}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--data", default=None)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--apply-to", default=None, metavar="RUN_DIR2")
    args = ap.parse_args()
    card = load_card(resolve(args.run))
    if card.get("training", {}).get("final_fit"):
        sys.exit(f"{args.run} was trained on the validation images (--final-fit); score a held-out run instead")
    scores = []
    for setting in SETTINGS:  # the card is not touched while scoring: the views are passed as overrides
        t0 = time.perf_counter()
        r = evaluate(args.run, split="val", data=args.data, overrides=setting)  # progress bar on stderr
        scores.append({**setting, "psnr": r["psnr"], "ssim": r["ssim"], "seconds": round(time.perf_counter() - t0, 1)})
        print(f"flip_tta={setting['flip_tta']!s:5} shift_tta={setting['shift_tta']}: validation PSNR "
              f"{r['psnr']:.3f} dB, SSIM {r['ssim']:.4f}, {scores[-1]['seconds']} s", flush=True)
    best = max(scores, key=lambda s: s["psnr"])
    chosen = {k: best[k] for k in SETTINGS[0]}
    print(f"best: {chosen}")
    if args.write:
        target = resolve(args.apply_to or args.run)
        out = load_card(target)
        out["config"].update(chosen)
        out["tta_selection"] = {"split": "val", "scored_run": Path(args.run).name, "scores": scores,
                                "command": shlex.join(["python", "benchmarks/tta_default.py", *sys.argv[1:]])}
        out.pop("flip_tta_selection", None)
        print(f"wrote {chosen} to {write_card(target, out)}")


if __name__ == "__main__":
    run_main(main)
