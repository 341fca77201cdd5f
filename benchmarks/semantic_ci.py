"""How sure is the "grey→colour gap closed" figure? A bootstrap interval over the test images.

Usage: python benchmarks/semantic_ci.py MODEL [MODEL ...] [--split test] [--resamples 2000] [--data DIR]
                                      [--classifier PATH]
For each model, the classifier (the bundled one, or PATH: e.g. one from ``python -m autocolor.classifier
--split train``, for the validation split it has not seen) labels the colorized, the grey and the original
images once; the images are then resampled with replacement (the same draws for every model) and the gap closed,
(acc(pred) - acc(grey)) / (acc(truth) - acc(grey)), is recomputed on each resample. Prints the figure as
``autocolor evaluate`` reports it and the 2.5th and 97.5th percentiles of the resamples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from autocolor.classifier import classifier_at
from autocolor.data import load_split
from autocolor.errors import AutocolorError, run_main
from autocolor.inference import colorize_all
from autocolor.runtime import pick_device, pick_precision
from autocolor.weights import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import positive_int  # noqa: E402


@torch.no_grad()
def correct_flags(model, images: torch.Tensor, labels: torch.Tensor, clf, device, precision) -> tuple:
    """Per-image 0/1 correctness of the classifier on (colorized, grey, original) images."""
    pred_ok, grey_ok, truth_ok = [], [], []
    for start, grey, pred in colorize_all(model, images, device, precision):
        lab = labels[start:start + len(pred)]
        pred_ok.append(clf(pred).argmax(1) == lab)
        grey_ok.append(clf(grey).argmax(1) == lab)
        truth_ok.append(clf(images[start:start + len(pred)]).argmax(1) == lab)
    return tuple(torch.cat(x).double() for x in (pred_ok, grey_ok, truth_ok))


def gap_closed(pred: torch.Tensor, grey: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Gap closed for each row of (resamples, images) 0/1 tensors (or one row)."""
    p, g, t = pred.mean(-1), grey.mean(-1), truth.mean(-1)
    return (p - g) / (t - g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--split", default="test")
    ap.add_argument("--resamples", type=positive_int, default=2000)
    ap.add_argument("--data", default=None)
    ap.add_argument("--classifier", default=None, help="classifier .safetensors (default: the bundled one)")
    args = ap.parse_args()
    clf = classifier_at(args.classifier)
    split = load_split(args.split, args.data)
    if clf is None:
        raise AutocolorError("the bundled classifier is missing (autocolor/bundled/instruments/)")
    device = pick_device("auto")
    precision = pick_precision("auto", device)
    draws = torch.randint(len(split.images), (args.resamples, len(split.images)),
                          generator=torch.Generator().manual_seed(0))
    which = args.classifier or "bundled classifier"
    print(f"{args.split} split, {len(split.images)} images, {args.resamples} bootstrap resamples (seed 0), "
          f"{precision}, {which}")
    print("| model | gap closed | 95% interval | accuracy colorized | grey | original |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in args.models:
        model, _ = load_model(spec, device, fuse=True)
        pred, grey, truth = correct_flags(model, split.images, split.labels, clf, device, precision)
        boot = torch.sort(gap_closed(pred[draws], grey[draws], truth[draws])).values
        lo, hi = boot[int(0.025 * len(boot))].item(), boot[int(0.975 * len(boot)) - 1].item()
        print(f"| {spec} | {gap_closed(pred, grey, truth).item():.3f} | {lo:.3f} – {hi:.3f} | "
              f"{pred.mean().item():.4f} | {grey.mean().item():.4f} | {truth.mean().item():.4f} |", flush=True)


if __name__ == "__main__":
    run_main(main)
