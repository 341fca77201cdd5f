"""Validation during training: loss, PSNR and SSIM on the held-out images (all-reduced under DDP), and the
per-epoch loss curve and sample sheet."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from autocolor import distributed as ddp
from autocolor.colour import grey_rgb, lab_and_input, to_float, to_uint8
from autocolor.data import Split
from autocolor.inference import colorize_all
from autocolor.metrics import psnr, ssim
from autocolor.nets import ColorNet
from autocolor.plots import loss_curve, save_png, tiled_grid
from autocolor.runtime import autocast
from autocolor.sources import GRID_IMAGES


def _val_batches(val, info: ddp.DistInfo):
    """uint8 batches of this rank's share of ``val`` (a Split, or an already sharded folder loader)."""
    if isinstance(val, Split):
        images = val.images[info.rank::info.world]
        for start in range(0, len(images), 500):
            yield images[start:start + 500]
    else:
        for imgs, _ in val:
            yield imgs


@torch.no_grad()
def validate(model: ColorNet, val: Split | Iterable, device: torch.device, precision: str,
             info: ddp.DistInfo | None = None) -> dict:
    """Validation loss, PSNR and SSIM of the 8-bit output, and PSNR of the grey input, on the held-out split.

    ``val`` is a Split or a folder DataLoader yielding ``(uint8 batch, failed)``. Under DDP each rank scores
    every ``world``-th image and the sums are all-reduced, so all ranks get the numbers of the whole set.
    """
    info = info or ddp.DistInfo()
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # loss * n, PSNR sum, grey PSNR sum, SSIM sum, n
    for imgs in _val_batches(val, info):
        rgb = to_float(imgs.to(device, non_blocking=True))
        lab, L = lab_and_input(rgb)
        with autocast(device, precision):
            raw = model(L.contiguous(memory_format=torch.channels_last))
        pred, grey = to_uint8(model.to_rgb(L, raw)).cpu(), to_uint8(grey_rgb(L)).cpu()
        imgs = imgs.cpu()
        sums += torch.tensor([float(model.loss(raw, lab, rgb)) * len(imgs), float(psnr(pred, imgs).sum()),
                              float(psnr(grey, imgs).sum()), float(ssim(pred, imgs).sum()), len(imgs)],
                             dtype=torch.float64)
    model.train()
    if info.enabled:
        sums = ddp.all_reduce_sum(info, sums.to(device)).cpu()
    n = max(float(sums[4]), 1.0)
    return {"val_loss": float(sums[0]) / n, "val_psnr": float(sums[1]) / n, "val_psnr_grey": float(sums[2]) / n,
            "val_ssim": float(sums[3]) / n}


def epoch_pictures(out: Path, model, val, records: list[dict], epoch: int, device, precision) -> None:
    loss_curve(records, out / "loss_curve.png")
    images = val[:GRID_IMAGES] if torch.is_tensor(val) else val.images[:GRID_IMAGES]
    grey, pred = next(colorize_all(model, images, device, precision))[1:]
    save_png(tiled_grid([grey, pred, images]), out / "samples" / f"epoch_{epoch:03d}.png")
