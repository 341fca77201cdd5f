"""Which per-image colour boost keeps colour recognisable? Boost rules compared at one colourfulness.

Usage: python benchmarks/boost_rules.py [--model vivid] [--caps 2.5 3] [--colourfulness C] [--classifier CLF]
       [--split val] [--max-images N] [--data DIR]
The networks of a ``vivid-ensemble`` (the bundled ``vivid`` by default) run once on the split; every rule then
decodes at the card's temperature and fidelity weight and scales each image's chroma about its mean a*b*:
- ``boost``: the per-image boost (``VividUNet.boost_factor``), uncapped (``boost_max`` 5);
- ``boost, cap S``: the same with each image's scale capped at S;
- ``one scale``: the same scale for every image.
Each rule's strength is bisected until the split's mean colourfulness is C (default: that of the card's own
decoding, printed first), so the rules are compared at equal colour. Printed for each: PSNR, colourfulness,
semantic accuracy and the grey->colour gap closed (by --classifier; for choices made on the validation split,
use one trained with ``python -m autocolor.classifier --split train``, which has not seen those images).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from autocolor.classifier import accuracy, classifier_at
from autocolor.colour import grey_rgb, lab_from, to_uint8
from autocolor.data import load_split
from autocolor.errors import AutocolorError, positive_int, run_main
from autocolor.inference import predict_all
from autocolor.metrics import colourfulness, psnr
from autocolor.nets import MAX_BOOST
from autocolor.runtime import pick_device, pick_precision
from autocolor.weights import load_model

STEPS = 16  # bisection steps per rule


def bisect(f: Callable[[float], float], lo: float, hi: float, target: float, steps: int = STEPS) -> float:
    """About the smallest x in [lo, hi] where the non-decreasing ``f`` reaches ``target`` (``hi`` if it never
    does)."""
    if f(hi) < target:
        return hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return hi


def scale_about_mean(ab: torch.Tensor, s: float) -> torch.Tensor:
    """Each image's a*b* scaled by ``s`` about its own mean (colour contrast up, tint kept)."""
    origin = ab.mean((2, 3), keepdim=True)
    return origin + (ab - origin) * s


class Split:
    """The networks' raw output on a split, decoded any number of times."""

    def __init__(self, spec: str, images: torch.Tensor, labels: torch.Tensor, clf) -> None:
        self.model, self.card = load_model(spec, "cpu", fuse=True)
        if self.card["architecture"] != "vivid-ensemble":
            raise AutocolorError(f"{spec}: a {self.card['architecture']} model; this script compares the boost rules "
                             "of a vivid-ensemble")
        self.images, self.labels, self.clf = images, labels, clf
        precision = pick_precision("auto", pick_device("cpu"))
        with tqdm(total=len(images), desc="networks", unit="img") as bar:
            self.parts = [(L, raw) for _, L, raw in predict_all(self.model, images, "cpu", precision, progress=bar)]
        self.plain = [self.model.chroma(L, raw, boost=0.0) for L, raw in self.parts]

    def rgb(self, rule: str, k: float, cap: float = MAX_BOOST) -> list[torch.Tensor]:
        """8-bit RGB per batch: ``rule`` "boost" at strength ``k`` capped at ``cap``, or "one scale" ``k``."""
        if rule == "one scale":
            abs_ = [scale_about_mean(ab, k) for ab in self.plain]
        else:
            abs_ = [self.model.chroma(L, raw, boost=k, boost_max=cap) for L, raw in self.parts]
        return [to_uint8(lab_from(L, ab)) for (L, _), ab in zip(self.parts, abs_, strict=True)]

    def colourfulness(self, batches: list[torch.Tensor]) -> float:
        return float(torch.cat([colourfulness(b) for b in batches]).mean())

    def accuracy(self, batches: list[torch.Tensor]) -> float | None:
        return None if self.clf is None else accuracy(self.clf, torch.cat(batches), self.labels)

    def score(self, batches: list[torch.Tensor]) -> dict:
        p, start = [], 0
        for b in batches:
            p.append(psnr(b, self.images[start:start + len(b)]))
            start += len(b)
        p = torch.cat(p)
        return {"psnr": float(p.mean()), "colourfulness": self.colourfulness(batches),
                "accuracy": self.accuracy(batches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vivid")
    ap.add_argument("--caps", type=float, nargs="+", default=[2.5, 3.0])
    ap.add_argument("--colourfulness", type=float, default=None, help="the colourfulness every rule is bisected to")
    ap.add_argument("--classifier", default=None, help="classifier weights for semantic accuracy [default: bundled]")
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-images", type=positive_int, default=None)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = load_split(args.split, args.data)
    images, labels = data.images[:args.max_images], data.labels[:args.max_images]
    split = Split(args.model, images, labels, classifier_at(args.classifier))
    grey = split.accuracy([to_uint8(grey_rgb(L)) for L, _ in split.parts])
    truth = split.accuracy([images])
    m = split.model
    card_rgb = split.rgb("boost", m.boost, m.boost_max)
    target = args.colourfulness or split.colourfulness(card_rgb)
    rows = [("card's decoding", f"boost {m.boost:g}, cap {m.boost_max:g}", split.score(card_rgb))]
    rules = [("boost", MAX_BOOST), *[(f"boost, cap {c:g}", c) for c in args.caps]]
    for name, cap in rules:
        k = bisect(lambda x, cap=cap: split.colourfulness(split.rgb("boost", x, cap)), 0.0, 0.2, target)
        rows.append((name, f"strength {k:.5f}", split.score(split.rgb("boost", k, cap))))
    s = bisect(lambda x: split.colourfulness(split.rgb("one scale", x)), 1.0, MAX_BOOST, target)
    rows.append(("one scale", f"scale {s:.4f}", split.score(split.rgb("one scale", s))))
    print(f"{args.model} on {len(images)} {args.split} images (temperature {m.temperature:g}, fidelity weight "
          f"{m.fidelity_weight:g}); rules bisected to colourfulness {target:.2f} (truth "
          f"{split.colourfulness([images]):.2f}); {time.perf_counter() - t0:.0f} s")
    print("| rule | setting | PSNR (dB) | colourfulness | semantic acc. | gap closed |")
    print("|---|---|---:|---:|---:|---:|")
    for name, setting, r in rows:
        acc, gap = r["accuracy"], "–"
        if acc is not None and truth != grey:
            gap = f"{100 * (acc - grey) / (truth - grey):.1f}%"
        acc_text = "–" if acc is None else f"{acc:.4f}"
        print(f"| {name} | {setting} | {r['psnr']:.3f} | {r['colourfulness']:.2f} | {acc_text} | {gap} |")
    if grey is not None:
        print(f"grey input accuracy {grey:.4f}, ground truth {truth:.4f}")


if __name__ == "__main__":
    run_main(main)
