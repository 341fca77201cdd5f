"""Evaluate a trained colorizer on a CIFAR-10 split against the plain grey input."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm import tqdm

from autocolor.classifier import classifier_at
from autocolor.colour import grey_rgb, to_uint8
from autocolor.data import load_split
from autocolor.errors import AutocolorError
from autocolor.inference import colorize_all, predict_all
from autocolor.metrics import ab_error_cdf, auc, colourfulness, psnr, ssim, target_ab
from autocolor.nets import ColorNet
from autocolor.plots import save_png, tiled_grid
from autocolor.runtime import pick_device, pick_precision
from autocolor.weights import load_model

GRID_INDICES = list(range(32))
CIFAR_SIDE = 32


class _Accumulator:
    """Running sums of per-image metrics for one set of outputs."""

    def __init__(self, classifier=None) -> None:
        self.psnr = self.ssim = self.cf = 0.0
        self.cdf = torch.zeros(151)
        self.n = self.correct = 0
        self.classifier = classifier

    def add(self, pred: torch.Tensor, target: torch.Tensor, labels: torch.Tensor | None,
            ab: torch.Tensor | None = None) -> None:
        """Score one batch; ``ab`` is the target's a*b* when the caller scores several outputs against it."""
        if self.classifier is not None:
            with torch.no_grad():
                self.correct += int((self.classifier(pred).argmax(1) == labels).sum())
        self.psnr += float(psnr(pred, target).sum())
        self.ssim += float(ssim(pred, target).sum())
        self.cf += float(colourfulness(pred).sum())
        self.cdf += ab_error_cdf(pred, target, ab) * len(pred)
        self.n += len(pred)

    def result(self, cf_truth: float) -> dict:
        cf = self.cf / self.n
        res = {"psnr": round(self.psnr / self.n, 4), "ssim": round(self.ssim / self.n, 5),
               "colorfulness": round(cf, 4), "delta_colorfulness": round(abs(cf - cf_truth), 4),
               "auc": round(auc(self.cdf / self.n), 5)}
        if self.classifier is not None:
            res["semantic_accuracy"] = round(self.correct / self.n, 4)
        return res


def evaluate(spec: str | os.PathLike, split: str = "test", max_images: int | None = None,
             data: str | None = None, device: str = "auto", precision: str = "auto",
             grid: str | os.PathLike | None = None, progress: bool = True,
             images: str | os.PathLike | None = None, workers: int = 2, overrides: dict | None = None,
             decodings: list[dict] | None = None, classifier: str | os.PathLike | None = None,
             **opts: float | None) -> dict | list[dict]:
    """Metrics of model ``spec`` on ``split`` (outputs rounded to 8 bits first) and of the grey input.

    PSNR and SSIM are per-image on RGB, then averaged; colourfulness is Hasler & Suesstrunk's;
    ``auc`` is the area under the a*b*-error curve for thresholds 0..150 (Zhang et al. 2016).
    With ``images=DIR`` the colour images of a folder are scored instead (see ``evaluate_folder``).
    ``overrides`` replace weight-free architecture options of the card (e.g. test-time views) for this call.
    ``decodings`` (a list of decoding options, e.g. ``[{"boost": 0.02}, {"boost": 0.03}]``, each on top of
    ``opts``) scores several decodings of one pass of the network and returns a list of results, one each.
    """
    dev = pick_device(device)
    precision = pick_precision(precision, dev)
    model, card = load_model(spec, dev, fuse=True, overrides=overrides)  # BatchNorm folded into the convolutions
    if images is not None:
        if decodings is not None or classifier is not None:
            raise AutocolorError("decodings and classifier are for CIFAR-10 splits, not --images")
        return evaluate_folder(model, card, spec, images, max_images=max_images, device=dev, precision=precision,
                               grid=grid, progress=progress, workers=workers, **opts)
    if CIFAR_SIDE % model.size_multiple:
        raise AutocolorError(f"{spec} needs image sides that are multiples of {model.size_multiple} and CIFAR-10's "
                             f"are {CIFAR_SIDE}: score it on a folder of larger photos with --images DIR")
    clf = classifier_at(classifier)
    split_data = load_split(split, data)
    images, labels = split_data.images, split_data.labels
    if max_images:
        images, labels = images[:max_images], labels[:max_images]
    variants = [{**opts, **d} for d in decodings] if decodings is not None else [opts]
    pred_accs, grey_acc, cf_truth = [_Accumulator(clf) for _ in variants], _Accumulator(clf), 0.0
    truth_correct = 0
    with tqdm(total=len(images), desc=f"evaluate {card.get('name', spec)}", unit="img", disable=not progress,
              mininterval=1.0) as bar:
        for start, L, raw in predict_all(model, images, dev, precision, progress=bar):
            target, lab = images[start:start + len(L)], labels[start:start + len(L)]
            ab = target_ab(target)
            for acc, variant in zip(pred_accs, variants, strict=True):
                acc.add(to_uint8(model.to_rgb(L, raw, **variant)).cpu(), target, lab, ab)
            grey_acc.add(to_uint8(grey_rgb(L)).cpu(), target, lab, ab)
            cf_truth += float(colourfulness(target).sum())
            if clf is not None:
                with torch.no_grad():
                    truth_correct += int((clf(target).argmax(1) == lab).sum())
    cf_truth /= len(images)
    truth = truth_correct / len(images) if clf is not None else None
    results = [_result(spec, card, split, len(images), precision, acc.result(cf_truth), grey_acc.result(cf_truth),
                       cf_truth, truth) for acc in pred_accs]
    if grid:
        idx = [i for i in GRID_INDICES if i < len(images)]
        sample = images[idx]
        grey, pred = next(colorize_all(model, sample, dev, precision, **variants[0]))[1:]
        saved = str(save_png(tiled_grid([grey, pred, sample]), Path(grid)))  # one grid, of the first decoding
        for result in results:
            result["grid"] = saved
    return results if decodings is not None else results[0]


def _result(spec, card: dict, split: str, n: int, precision: str, pred: dict, grey: dict, cf_truth: float,
            truth_accuracy: float | None) -> dict:
    """One result object: the prediction's metrics, the grey baseline's, the ground truth's, the gap closed."""
    result = {"model": str(spec), "architecture": card["architecture"], "split": split, "n_images": n,
              "precision": precision, **pred, "grey_baseline": grey,
              "ground_truth": {"colorfulness": round(cf_truth, 4)}}
    if truth_accuracy is not None:
        result["ground_truth"]["semantic_accuracy"] = round(truth_accuracy, 4)
        gap = truth_accuracy - grey["semantic_accuracy"]
        result["semantic_gap_closed"] = round((pred["semantic_accuracy"] - grey["semantic_accuracy"]) / gap,
                                              4) if gap > 0 else None
    return result


def evaluate_folder(model: ColorNet, card: dict, spec: str | os.PathLike, folder: str | os.PathLike,
                    max_images: int | None = None, device: torch.device | str = "cpu", precision: str = "auto",
                    grid: str | os.PathLike | None = None, progress: bool = True, workers: int = 2,
                    **opts: float | None) -> dict:
    """Score a loaded model on the colour images under ``folder``: centre crops at the card's image size.

    Greyscale and unreadable files are skipped (and counted), as in training. Models without an
    ``image_size`` in their card were trained on CIFAR-10 and are scored at 32 x 32.
    """
    from autocolor.folders import FolderDataset, eval_loader, scan_option
    from autocolor.inference import colorize_batch

    size = int(card.get("image_size") or card.get("training", {}).get("image_size") or 32)
    precision = pick_precision(precision, torch.device(device))
    found = scan_option("--images", folder, workers)
    files = found.files[:max_images] if max_images else found.files
    dataset = FolderDataset(files, size, train=False)
    pred_acc, grey_acc, cf_truth = _Accumulator(), _Accumulator(), 0.0
    sample: list[torch.Tensor] = []
    with tqdm(total=len(files), desc=f"evaluate {card.get('name', spec)}", unit="img", disable=not progress,
              mininterval=1.0) as bar:
        for target, _ in eval_loader(dataset, 64, workers=workers):
            grey, pred = colorize_batch(model, target, device, precision, **opts)
            ab = target_ab(target)
            pred_acc.add(pred, target, None, ab)
            grey_acc.add(grey, target, None, ab)
            cf_truth += float(colourfulness(target).sum())
            if sum(len(t) for t in sample) < len(GRID_INDICES):
                sample.append(target)
            bar.update(len(target))
    cf_truth /= len(files)
    result = {"model": str(spec), "architecture": card["architecture"], "split": "folder", "images": found.root,
              "image_size": size, "n_images": len(files), "precision": precision, **pred_acc.result(cf_truth),
              "grey_baseline": grey_acc.result(cf_truth), "ground_truth": {"colorfulness": round(cf_truth, 4)},
              "skipped": {"greyscale": len(found.grey), "unreadable": len(found.bad)}}
    if grid:
        first = torch.cat(sample)[:len(GRID_INDICES)]
        grey, pred = colorize_batch(model, first, device, precision, **opts)
        result["grid"] = str(save_png(tiled_grid([grey, pred, first]), Path(grid)))
    return result
