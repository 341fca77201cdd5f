"""Base class for colorization networks: the model owns its objective and how raw output becomes colour.

Every network takes the model input ``L`` (CIE L*/100, shape (N, 1, H, W)) and returns raw output.
``output`` says what that raw output is: ``"rgb"`` (sRGB in [0, 1]) or ``"ab"`` (a*, b* / AB_SCALE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autocolor.colour import AB_SCALE, lab_from, rgb_to_lab, saturate

MAX_BOOST = 5.0  # the largest per-image chroma scale the vivid boost considers


def check_boost_max(value: float) -> float:
    """``value`` as a float if it is a valid ``boost_max`` (1 to ``MAX_BOOST``), else ValueError."""
    if not 1.0 <= value <= MAX_BOOST:
        raise ValueError(f"boost_max must be in [1, {MAX_BOOST:g}] (the largest per-image chroma scale), got {value}")
    return float(value)


def decoding_options(temperature: float | None = None, boost: float | None = None,
                     boost_max: float | None = None) -> dict:
    """The decoding knobs a caller set, as ``chroma``/``to_rgb`` keyword arguments (unset ones: the card's)."""
    return {k: v for k, v in (("temperature", temperature), ("boost", boost), ("boost_max", boost_max))
            if v is not None}


class ColorNet(nn.Module):
    """A colorizer: ``forward(L) -> raw``, ``loss(raw, lab, rgb)``, ``chroma(L, raw) -> a*b*``."""

    output = "ab"
    size_multiple = 8  # input sides must be multiples of this; each model sets its own
    uses_labels = False  # True for a model whose ``loss`` also takes the images' class labels
    decodes = False  # True for classification models, whose ``chroma`` takes temperature / boost / boost_max

    def loss(self, raw: torch.Tensor, lab: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """Training loss against the target image given as Lab and as sRGB in [0, 1]."""
        if self.output == "rgb":
            return F.mse_loss(raw.float(), rgb)
        return F.mse_loss(raw.float(), lab[:, 1:] / AB_SCALE)

    def chroma(self, L: torch.Tensor, raw: torch.Tensor, **opts: float | None) -> torch.Tensor:
        """a*, b* in Lab units predicted for input ``L`` (used to colour full-resolution images)."""
        if self.output == "rgb":
            return rgb_to_lab(raw.float().clamp(0, 1))[:, 1:]
        return raw.float() * AB_SCALE

    def to_rgb(self, L: torch.Tensor, raw: torch.Tensor, saturation: float = 1.0, **opts: float | None) -> torch.Tensor:
        """sRGB in [0, 1]. An ``ab`` model keeps ``L`` exactly; an ``rgb`` model returns its own image."""
        if self.output == "rgb" and saturation == 1.0:
            return raw.float().clamp(0, 1)
        if self.output == "rgb":
            lab = rgb_to_lab(raw.float().clamp(0, 1))
            return lab_from(lab[:, :1] / 100.0, saturate(lab[:, 1:], saturation))
        return lab_from(L, saturate(self.chroma(L, raw, **opts), saturation))

    @torch.no_grad()
    def colorize(self, L: torch.Tensor, **opts: float | None) -> torch.Tensor:
        """Convenience: eval-mode forward then ``to_rgb``; the module's train/eval mode is restored after."""
        was_training = self.training
        self.eval()
        try:
            return self.to_rgb(L, self(L), **opts)
        finally:
            self.train(was_training)
