"""Image-quality metrics on 8-bit RGB batches (N, 3, H, W): PSNR, SSIM, colourfulness, ab-error AuC."""

from __future__ import annotations

import torch
from kornia.filters import filter2d_separable, get_gaussian_kernel1d
from kornia.metrics import ssim as _ssim_map

from autocolor.colour import rgb_to_lab, to_float


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB on 8-bit RGB (peak 255); identical images are capped at 100 dB."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))).clamp_max(100.0)


def ssim_window(height: int, width: int) -> int:
    """SSIM's window side: 11 (Wang et al. 2004), or the largest odd side that fits an image smaller than that."""
    side = min(11, height, width)
    return side if side % 2 else side - 1


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, valid region), mean over RGB.
    Images under 11 pixels on a side get a smaller window (``ssim_window``)."""
    window = ssim_window(*pred.shape[-2:])
    smap = _ssim_map(to_float(pred), to_float(target), window_size=window, max_val=1.0, padding="valid")
    return smap.flatten(1).mean(1)


def ssim_map_float(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM map of float images in [0, 1], differentiable: what ``ssim`` averages (window 11, sigma 1.5, valid),
    with the Gaussian applied as two 1-D passes, which halves the time of kornia's 2-D window in training."""
    k = get_gaussian_kernel1d(ssim_window(*pred.shape[-2:]), 1.5, device=pred.device, dtype=pred.dtype)
    n = pred.shape[1]
    stats = filter2d_separable(torch.cat([pred, target, pred * pred, target * target, pred * target], 1), k, k,
                               padding="valid")
    mx, my, xx, yy, xy = stats.split(n, 1)
    c1, c2 = 0.01**2, 0.03**2
    var_x, var_y, cov = xx - mx * mx, yy - my * my, xy - mx * my
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (var_x + var_y + c2))


def colourfulness_parts(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (sigma_rgyb, mu_rgyb) of Hasler & Suesstrunk (2003) on 0..255 RGB: colour spread and mean tint."""
    r, g, b = images.float().unbind(1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    sigma = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mu = (rg.mean(1).pow(2) + yb.mean(1).pow(2)).sqrt()
    return sigma, mu


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Per-image colourfulness of Hasler & Suesstrunk (2003) on 0..255 RGB: sigma_rgyb + 0.3 mu_rgyb."""
    sigma, mu = colourfulness_parts(images)
    return sigma + 0.3 * mu


AUC_THRESHOLDS = torch.arange(0, 151, dtype=torch.float32)


def target_ab(target: torch.Tensor) -> torch.Tensor:
    """a*b* of 8-bit RGB images, (N, 2, H, W): computed once per batch when several outputs are scored."""
    return rgb_to_lab(to_float(target))[:, 1:]


def ab_error_cdf(pred: torch.Tensor, target: torch.Tensor, ab: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of pixels whose a*b* Euclidean error is within each threshold 0..150 (151 values).

    ``ab``: ``target_ab(target)`` if already computed."""
    ab = target_ab(target) if ab is None else ab
    err = (rgb_to_lab(to_float(pred))[:, 1:] - ab).norm(dim=1).flatten()
    counts = torch.bucketize(err, AUC_THRESHOLDS, right=False)
    hist = torch.bincount(counts, minlength=len(AUC_THRESHOLDS) + 1)[: len(AUC_THRESHOLDS)]
    return hist.cumsum(0).float() / err.numel()


def auc(cdf: torch.Tensor) -> float:
    """Area under the ab-error CDF over thresholds 0..150, normalised to [0, 1] (Zhang et al. 2016)."""
    return float(torch.trapezoid(cdf, AUC_THRESHOLDS) / (AUC_THRESHOLDS[-1] - AUC_THRESHOLDS[0]))
