"""Model registry: ``build(name)`` returns an ``nn.Module``; importing this module registers every architecture."""

from __future__ import annotations

from torch import nn

from autocolor import ensemble, seed, unet  # noqa: F401  (registers seed, seed-lab, unet, unet-vivid, vivid-ensemble)
from autocolor.registry import build, names, trainable

__all__ = ["build", "names", "trainable", "count_params"]


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
