"""Batched inference on CIFAR-style uint8 batches, shared by validation, evaluation and sample grids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from autocolor.colour import grey_rgb, greyscale, to_float, to_uint8
from autocolor.runtime import autocast

if TYPE_CHECKING:
    from tqdm import tqdm


@torch.no_grad()
def predict_batch(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                  precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB (N, 3, H, W) -> (model input L, raw network output), on ``device``."""
    device = torch.device(device)
    L = greyscale(to_float(images.to(device)))
    with autocast(device, precision):
        raw = model(L.contiguous(memory_format=torch.channels_last))
    return L, raw


@torch.no_grad()
def colorize_batch(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                   precision: str = "fp32", **opts: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB (N, 3, H, W) -> (grey input as uint8 RGB, colorized uint8 RGB), both on the CPU."""
    L, raw = predict_batch(model, images, device, precision)
    return to_uint8(grey_rgb(L)).cpu(), to_uint8(model.to_rgb(L, raw, **opts)).cpu()


def colorize_all(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                 precision: str = "fp32", batch_size: int = 500, progress: tqdm | None = None,
                 **opts: float | None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(start, grey_u8, pred_u8)`` over ``images`` in batches; ``progress`` is an optional tqdm."""
    for start, L, raw in predict_all(model, images, device, precision, batch_size, progress):
        yield start, to_uint8(grey_rgb(L)).cpu(), to_uint8(model.to_rgb(L, raw, **opts)).cpu()


@torch.no_grad()
def predict_all(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                precision: str = "fp32", batch_size: int = 500,
                progress: tqdm | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(start, L, raw)`` over uint8 RGB ``images`` in batches: the network runs once per batch, and any
    number of decodings can follow (``model.to_rgb(L, raw, **opts)``). ``progress`` is an optional tqdm."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            L, raw = predict_batch(model, images[start:start + batch_size], device, precision)
            if progress is not None:
                progress.update(len(L))
            yield start, L, raw
    finally:
        model.train(was_training)
