"""Quality table: every bundled colorizer on the full CIFAR-10 test set, beside the grey input and truth.

Usage: python benchmarks/quality.py [--max-images N] [--out docs/results.md] [--precision auto|fp32|bf16]
Writes the markdown table (pasted into the README), stores each model's test metrics in its card,
draws each model's grid into docs/, and plots validation PSNR against training seconds for `default`.
With ``--precision fp32`` or ``bf16`` it only writes the table (default benchmarks/results/quality_PRECISION.md):
the cards keep the figures of ``--precision auto``, the README's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from autocolor.errors import positive_int, run_main
from autocolor.evaluate import evaluate
from autocolor.plots import save_figure
from autocolor.runtime import machine_name
from autocolor.weights import BUNDLED, bundled_names, load_card, write_card

ORDER = ["seed", "seed-lab", "default", "vivid"]
COLUMNS = ["psnr", "ssim", "colorfulness", "delta_colorfulness", "auc", "semantic_accuracy", "semantic_gap_closed"]


def row(name: str, m: dict) -> str:
    cells = [f"{m[k]:.4f}" if isinstance(m.get(k), float) else "–" for k in COLUMNS]
    return f"| {name} | " + " | ".join(cells) + " |"


def time_to_quality(card: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = "default (validation)"
    hist = card["training"].get("history", [])
    if card["training"].get("final_fit"):  # its validation images were trained on: plot the held-out twin run
        hist = card["training"].get("heldout_run", {}).get("history", [])
        label = "held-out twin run: 45,000 images, 40 epochs (validation)"
    if not hist:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot([h["seconds"] for h in hist], [h["val_psnr"] for h in hist], "o-", label=label)
    ax.axhline(hist[-1]["val_psnr_grey"], color="grey", ls="--", label="grey input")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation PSNR (dB)")
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-images", type=positive_int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="default docs/results.md (with --precision auto)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = ap.parse_args()
    fixed = args.precision != "auto"  # a side table: no cards, grids or plots are written
    args.out = args.out or Path(f"benchmarks/results/quality_{args.precision}.md" if fixed else "docs/results.md")
    names = [n for n in ORDER if n in bundled_names()] + [n for n in bundled_names() if n not in ORDER]
    lines = ["| model | PSNR (dB) | SSIM | colourfulness | Δ colourfulness | AuC | semantic acc. "
             "| grey→colour gap closed |",
             "|---|---|---|---|---|---|---|---|"]
    grey = truth = None
    t0 = time.time()
    for name in names:
        res = evaluate(name, max_images=args.max_images, data=args.data, precision=args.precision,
                       grid=None if fixed else Path("docs") / f"grid-{name}.png")
        print(json.dumps(res))
        lines.append(row(f"`{name}`", res))
        grey, truth = res["grey_baseline"], res["ground_truth"]
        if fixed:
            continue
        weights = BUNDLED / f"{name}.safetensors"
        card = load_card(weights)
        card.setdefault("metrics", {})["test"] = {k: v for k, v in res.items() if k not in ("model", "grid")}
        write_card(weights, card)
        if name == "default":
            time_to_quality(card, Path("docs/time_to_quality.png"))
    if grey:
        lines.append(row("grey input", grey))
        lines.append(row("ground truth", {"colorfulness": truth["colorfulness"],
                                          "semantic_accuracy": truth.get("semantic_accuracy")}))
    n = res["n_images"] if names else 0
    how = f"`--precision {args.precision}`" if fixed else "`evaluate`'s default `--precision auto`"
    text = (f"Test set: {n} CIFAR-10 test images. Machine: {machine_name()}. Inference precision: "
            f"{res['precision'] if names else '-'} ({how}). "
            f"Made by `python benchmarks/quality.py{' --precision ' + args.precision if fixed else ''}` in "
            f"{time.time() - t0:.0f} s.\n\n" + "\n".join(lines) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    run_main(main)
