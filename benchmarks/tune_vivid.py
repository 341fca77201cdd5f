"""Choose the vivid model's decoding (temperature, calibration, colour boost) on the validation split.

Usage: python benchmarks/tune_vivid.py RUN_DIR [--temperatures 0.6 1.0] [--boosts 0 0.02 ...] [--boost-maxes 2.5 5]
       [--calibrate] [--flip-tta] [--shift-tta 2] [--centred] [--mixes 1 0.7] [--fidelity-weights 0.4]
       [--max-images N] [--classifier CLF [--min-psnr P]] [--write]
Every (temperature, boost, boost_max) triple, and each ``mix`` for a run trained with ``regress`` (each
``fidelity_weight`` for a ``vivid-ensemble``, whose members' views and calibrated, centred decoding are fixed), is
scored on the validation split (never the test set). The rule: the best PSNR among decodings whose
|colourfulness - truth| <= --max-delta (default 2.0, the issue's target; a smaller value leaves a margin for the
test set), else the smallest colourfulness gap. With --min-psnr it is the largest semantic gap closed (by
--classifier, which should not have seen the validation images) among those that also keep PSNR >= --min-psnr.
--write stores the choice and the whole table in the run's model card, which `scripts/bundle.py` copies.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from autocolor.errors import AutocolorError, positive_int, run_main
from autocolor.evaluate import evaluate
from autocolor.weights import load_card, resolve, write_card

VIVID = ("unet-vivid", "vivid-ensemble")  # the models whose decoding this tunes
FIXED_IN_ENSEMBLE = ("calibrate", "flip_tta", "shift_tta", "centred", "mixes")

KEYS = ["temperature", "boost", "boost_max", "mix", "fidelity_weight", "psnr", "ssim", "colorfulness",
        "delta_colorfulness", "grey_psnr", "semantic_accuracy", "semantic_gap_closed"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.38, 0.6, 1.0])
    ap.add_argument("--boosts", type=float, nargs="+", default=[0.0])
    ap.add_argument("--boost-maxes", type=float, nargs="+", default=[None],
                    help="caps on the boost's per-image chroma scale (1 to 5) [default: the card's]")
    ap.add_argument("--calibrate", action="store_true", help="undo the class rebalancing before decoding")
    ap.add_argument("--flip-tta", action="store_true", help="average the bin logits with the mirrored input's")
    ap.add_argument("--shift-tta", type=int, default=0, metavar="S",
                    help="also average the views translated by S (even) pixels each way")
    ap.add_argument("--centred", action="store_true",
                    help="boost each image's colour contrast about its mean a*b* (boost_centred), not about grey")
    ap.add_argument("--mixes", type=float, nargs="+", default=None,
                    help="weights of the direct a*b* in the decoded mean (a run trained with regress > 0)")
    ap.add_argument("--fidelity-weights", type=float, nargs="+", default=None,
                    help="weights of the fidelity members' a*b* in the decoded mean (a vivid-ensemble)")
    ap.add_argument("--max-delta", type=float, default=2.0, help="largest validation delta colourfulness allowed")
    ap.add_argument("--max-images", type=positive_int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--classifier", default=None,
                    help="classifier weights for semantic accuracy; one trained with --split train has not seen the "
                         "validation images (the bundled one has)")
    ap.add_argument("--min-psnr", type=float, default=None,
                    help="choose the largest semantic gap closed among decodings with at least this validation PSNR "
                         "(needs --classifier)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.min_psnr is not None and not args.classifier:
        ap.error("--min-psnr chooses by semantic accuracy: give --classifier (one trained with --split train)")
    architecture = load_card(resolve(args.run))["architecture"]
    if architecture not in VIVID:
        raise AutocolorError(f"tune_vivid needs a classification (vivid) model: {args.run} is {architecture}, not "
                             f"{' or '.join(VIVID)}")
    ensemble = architecture == "vivid-ensemble"
    if ensemble and any(getattr(args, k) for k in FIXED_IN_ENSEMBLE):
        ap.error("a vivid-ensemble's views and calibrated, centred decoding are fixed; it takes --temperatures, "
                 "--boosts and --fidelity-weights")
    if args.fidelity_weights and not ensemble:
        ap.error("--fidelity-weights applies to a vivid-ensemble")
    knob, values = ("fidelity_weight", args.fidelity_weights) if ensemble else ("mix", args.mixes)
    rows = []
    print(f"| temperature | boost | boost_max | {knob} | PSNR | SSIM | colourfulness | delta | semantic acc. | "
          "gap closed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    options = {} if ensemble else {"flip_tta": args.flip_tta, "shift_tta": args.shift_tta,
                                   "boost_centred": args.centred}

    def overrides(value: float | None) -> dict:
        return options if value is None else {**options, knob: value}

    pairs = [(t, b, cap) for t in args.temperatures for b in args.boosts for cap in args.boost_maxes]
    # a run's mix is an architecture option: its network runs once per mix. An ensemble's fidelity weight is a
    # decoding option, like temperature and boost: its networks run once for the whole grid.
    passes = [(None, [(w, *tbc) for w in values or [None] for tbc in pairs])] if ensemble else [
        (value, [(value, *tbc) for tbc in pairs]) for value in values or [None]]
    for value, grid in passes:
        decodings = [{"temperature": t, "boost": b, **({"boost_max": cap} if cap is not None else {}),
                      **({knob: w} if ensemble and w is not None else {})} for w, t, b, cap in grid]
        results = evaluate(args.run, split="val", max_images=args.max_images, data=args.data,
                           calibrate=args.calibrate, overrides=overrides(value), decodings=decodings,
                           classifier=args.classifier)
        for (w, t, b, cap), r in zip(grid, results, strict=True):
            rows.append(dict(zip(KEYS, (t, b, cap, None, None, r["psnr"], r["ssim"], r["colorfulness"],
                                        r["delta_colorfulness"], r["grey_baseline"]["psnr"],
                                        r.get("semantic_accuracy"), r.get("semantic_gap_closed")), strict=True)))
            rows[-1][knob] = w
            shown, cap_shown = ("-" if x is None else f"{x:g}" for x in (w, cap))
            print(f"| {t:.2f} | {b:g} | {cap_shown} | {shown} | {r['psnr']:.3f} | {r['ssim']:.4f} | "
                  f"{r['colorfulness']:.2f} | {r['delta_colorfulness']:.2f} | {r.get('semantic_accuracy')} | "
                  f"{r.get('semantic_gap_closed')} |", flush=True)
    best, rule = choose(rows, args.max_delta, args.min_psnr)
    print(f"chosen temperature {best['temperature']}, boost {best['boost']}, boost_max {best['boost_max']}, {knob} "
          f"{best[knob]} (validation PSNR {best['psnr']:.3f}, delta colourfulness "
          f"{best['delta_colorfulness']:.2f}, gap closed {best['semantic_gap_closed']}; grey PSNR "
          f"{best['grey_psnr']:.3f}; rule: {rule})")
    if args.write:
        weights = resolve(args.run)
        card = load_card(weights)
        decoding = {} if ensemble else {"calibrate": args.calibrate}
        if best["boost_max"] is not None:
            decoding["boost_max"] = best["boost_max"]
        card["config"].update(temperature=best["temperature"], boost=best["boost"], **decoding,
                              **overrides(best[knob]))
        card["decoding_selection"] = {"split": "val", "rule": rule,
                                      "command": shlex.join(["python", "benchmarks/tune_vivid.py", *sys.argv[1:]]),
                                      "table": rows,
                                      **({"classifier": args.classifier} if args.classifier else {})}
        card.pop("temperature_selection", None)
        write_card(weights, card)


def choose(rows: list[dict], max_delta: float, min_psnr: float | None = None) -> tuple[dict, str]:
    """The rule's row and the rule in words: the best PSNR among rows with delta colourfulness <= ``max_delta``
    (none: the smallest delta); with ``min_psnr``, the largest semantic gap closed among those rows that also keep
    PSNR >= ``min_psnr`` (ties: the better PSNR), falling back to the first rule when none does."""
    rule = f"best PSNR with delta colourfulness <= {max_delta}"
    ok = [row for row in rows if row["delta_colorfulness"] <= max_delta]
    if min_psnr is not None:
        rule = (f"largest semantic gap closed with delta colourfulness <= {max_delta} and PSNR >= {min_psnr}, "
                f"else {rule}")
        kept = [row for row in ok if row["psnr"] >= min_psnr and row.get("semantic_gap_closed") is not None]
        if kept:
            return max(kept, key=lambda row: (row["semantic_gap_closed"], row["psnr"])), rule
    if ok:
        return max(ok, key=lambda row: row["psnr"]), rule
    return (min(rows, key=lambda row: row["delta_colorfulness"]),
            f"no decoding met delta colourfulness <= {max_delta}: the smallest delta colourfulness")


if __name__ == "__main__":
    run_main(main)
