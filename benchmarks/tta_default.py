"""Should the default model average its prediction with the mirrored one (flip test-time augmentation)?

Usage: python benchmarks/tta_default.py RUN_DIR [--write]
Scores the run on the validation split (never the test set) with ``flip_tta`` off and on; --write keeps
the better setting in the run's model card (``config.flip_tta``), which `scripts/bundle.py` copies.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from autocolor.evaluate import evaluate
from autocolor.weights import resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--data", default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    card_path = Path(resolve(args.run)).with_suffix(".json")
    card = json.loads(card_path.read_text())
    scores = {}
    for flag in (False, True):
        card["config"]["flip_tta"] = flag
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        t0 = time.perf_counter()
        r = evaluate(args.run, split="val", data=args.data, progress=False)
        scores[flag] = {"psnr": r["psnr"], "ssim": r["ssim"], "seconds": round(time.perf_counter() - t0, 1)}
        print(f"flip_tta={flag}: validation PSNR {r['psnr']:.3f} dB, SSIM {r['ssim']:.4f}, "
              f"{scores[flag]['seconds']} s", flush=True)
    best = max(scores, key=lambda f: scores[f]["psnr"])
    card["config"]["flip_tta"] = best if args.write else False
    if args.write:
        card["flip_tta_selection"] = {"split": "val", "scores": {str(k): v for k, v in scores.items()},
                                      "command": shlex.join(["python", "benchmarks/tta_default.py", *sys.argv[1:]])}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"chosen flip_tta={card['config']['flip_tta']}")


if __name__ == "__main__":
    main()
