"""Colour conversions shared by training, evaluation and colorizing (CIE Lab via kornia, D65, sRGB).

Greyscale is CIE L* (lightness of Lab), not BT.601 luma: the Lab models keep L* exactly and predict
only a*, b*, so using L* as the grey image makes "keep the input's luminance" an identity, and the
grey baseline is simply the Lab image with a* = b* = 0.
"""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb as _lab_to_rgb
from kornia.color import rgb_to_lab as _rgb_to_lab

AB_SCALE = 110.0  # a*, b* of sRGB colours lie within about ±110


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) in 0..255 -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """float RGB in [0, 1] -> uint8, rounded to nearest (what a saved 8-bit image holds)."""
    return rgb.float().clamp(0, 1).mul(255.0).round_().to(torch.uint8)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (N, 3, H, W) -> Lab with L in [0, 100], a and b roughly in [-110, 110]."""
    return _rgb_to_lab(rgb.float().clamp(0, 1))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> sRGB in [0, 1], out-of-gamut colours clipped."""
    return _lab_to_rgb(lab.float(), clip=True)


def greyscale(rgb: torch.Tensor) -> torch.Tensor:
    """The model input for a colour image: CIE L* / 100, shape (N, 1, H, W), values in [0, 1].

    Grey inputs (R = G = B) map to the same value as their colour originals would, so a user's
    black-and-white photo and a desaturated CIFAR image are treated alike.
    """
    return lab_and_input(rgb)[1]


def lab_and_input(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab of ``rgb`` and the model input derived from it (``greyscale``), computed once for training."""
    lab = rgb_to_lab(rgb)
    return lab, lab[:, :1] / 100.0


def grey_rgb(lightness: torch.Tensor) -> torch.Tensor:
    """Model input (L*/100) -> the neutral grey sRGB image with that lightness, R = G = B exactly.

    (Lab -> sRGB in float32 gives channels up to 4e-5 apart, enough to tint ~0.5% of 8-bit pixels.)
    """
    rgb = lab_from(lightness, torch.zeros_like(lightness).expand(-1, 2, -1, -1))
    return rgb[:, :1].expand(-1, 3, -1, -1).contiguous()  # R: the channel closest to L* (within 3e-6)


def lab_from(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Combine model input (L*/100) and a*, b* (in Lab units) into sRGB in [0, 1]."""
    return lab_to_rgb(torch.cat([lightness.float() * 100.0, ab.float()], dim=1))


def saturate(ab: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale chroma by ``factor`` (1 = unchanged, 0 = grey); hue and lightness are kept."""
    return ab * factor
