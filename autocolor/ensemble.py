"""``vivid-ensemble``: the vivid decoding over several trained networks at once (a deep ensemble).

Its ``unet-vivid`` members each predict a distribution over a*b* bins with their own test-time views; the
ensemble averages their calibrated distributions (the class rebalancing divided out), takes the annealed mean
at ``temperature``, mixes in the mean a*b* of its ``unet`` fidelity members with weight ``fidelity_weight``
(trained for PSNR at full resolution, they are the better estimate of the mean colour) and applies
``unet-vivid``'s per-image colour boost about each image's mean a*b* with strength ``boost``, the spread of the
averaged distribution standing for the expected error, each image's chroma scale capped at ``boost_max``.
``scripts/ensemble.py`` builds one from trained runs; it is not trained itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autocolor.colour import AB_SCALE
from autocolor.errors import AutocolorError
from autocolor.nets import MAX_BOOST, ColorNet, check_boost_max
from autocolor.registry import register
from autocolor.unet import VividUNet, unet, unet_vivid


class VividEnsemble(ColorNet):
    """Averaged ``unet-vivid`` bin distributions, optionally mixed with ``unet`` a*b*, then the colour boost.

    Raw output, at half resolution: the log of the averaged distribution (one channel per bin), then the
    fidelity members' mean a*b* / AB_SCALE folded 2x2 into 8 channels (``pixel_unshuffle``), so
    ``chroma`` can apply the decoding knobs (temperature, boost) after the networks have run.
    """

    output = "bins"
    decodes = True
    trainable = False  # assembled from trained runs by scripts/ensemble.py

    def __init__(self, vivid: list[dict] | None = None, fidelity: list[dict] | None = None,
                 fidelity_weight: float = 0.0, temperature: float = 1.0, boost: float = 0.0,
                 boost_max: float = MAX_BOOST) -> None:
        super().__init__()
        fidelity = list(fidelity or [])
        if not vivid:
            raise ValueError("vivid-ensemble needs at least one unet-vivid member (scripts/ensemble.py assembles "
                             "one from trained runs)")
        _check_weight(fidelity_weight, len(fidelity))
        # members decode calibrated, boosting about each image's mean a*b*; the ensemble does both itself
        self.vivid = nn.ModuleList(unet_vivid(**{**cfg, "calibrate": True, "boost_centred": True, "boost": 0.0})
                                   for cfg in vivid)
        self.fidelity = nn.ModuleList(unet(**cfg) for cfg in fidelity)
        bins = {m.bins for m in self.vivid}
        if len(bins) != 1:
            raise ValueError(f"vivid members disagree on the number of bins: {sorted(bins)}")
        self.bins = bins.pop()
        self.fidelity_weight = float(fidelity_weight)
        self.temperature = temperature
        self.boost = boost
        self.boost_max = check_boost_max(boost_max)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of every member's."""
        return max(m.size_multiple for m in [*self.vivid, *self.fidelity])

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        """Log of the vivid members' colour distributions averaged (rebalancing divided out), then the fidelity
        members' mean a*b* at the head's resolution (pixel-unshuffled), as channels."""
        stride = VividUNet.head_stride
        p = torch.stack([torch.softmax(m(L)[:, :self.bins].float() - m.class_weight.log()[None, :, None, None], 1)
                         for m in self.vivid]).mean(0)
        parts = [p.clamp_min(1e-12).log()]
        if len(self.fidelity):
            ab = torch.stack([m(L).float() for m in self.fidelity]).mean(0)
            parts.append(F.pixel_unshuffle(ab, stride))
        return torch.cat(parts, 1)

    def chroma(self, L: torch.Tensor, raw: torch.Tensor, temperature: float | None = None,
               boost: float | None = None, fidelity_weight: float | None = None, boost_max: float | None = None,
               **opts: float | None) -> torch.Tensor:
        """Annealed mean of the averaged distribution, the fidelity a*b* mixed in, then the per-image boost.

        ``None`` options take the model's own settings (from its card)."""
        t = self.temperature if temperature is None else temperature
        b = self.boost if boost is None else boost
        w = self.fidelity_weight if fidelity_weight is None else _check_weight(fidelity_weight, len(self.fidelity))
        raw = raw.float()
        p = torch.softmax(raw[:, :self.bins] / max(t, 1e-3), dim=1)  # raw holds log p: this anneals it
        member = self.vivid[0]
        mean = torch.einsum("nqhw,qc->nchw", p, member.centres)
        ab = F.interpolate(mean, size=L.shape[-2:], mode="bilinear", align_corners=False)
        if len(self.fidelity):
            direct = F.pixel_shuffle(raw[:, self.bins:], VividUNet.head_stride) * AB_SCALE
            ab = w * direct + (1 - w) * ab
        if b > 0:
            cap = self.boost_max if boost_max is None else boost_max
            scale = member.boost_factor(L, p, F.avg_pool2d(ab, VividUNet.head_stride), b, mean=mean, max_scale=cap)
            origin = ab.mean((2, 3), keepdim=True)
            ab = origin + (ab - origin) * scale
        return ab

    def loss(self, *args: object, **kwargs: object) -> torch.Tensor:
        """Always an AutocolorError: an ensemble is assembled from trained runs, not trained."""
        raise AutocolorError("vivid-ensemble is assembled from trained runs (scripts/ensemble.py), not trained")


def _check_weight(weight: float, members: int) -> float:
    if not 0 <= weight <= 1 or (weight > 0 and not members):
        raise ValueError(f"fidelity_weight must be in [0, 1], and 0 without fidelity members; got {weight} with "
                         f"{members} fidelity members")
    return float(weight)


@register("vivid-ensemble")
def vivid_ensemble(vivid: list[dict] | None = None, fidelity: list[dict] | None = None,
                   fidelity_weight: float = 0.0, temperature: float = 1.0, boost: float = 0.0,
                   boost_max: float = MAX_BOOST) -> VividEnsemble:
    """Ensemble of ``unet-vivid`` runs (``vivid``: their card configs) and optional ``unet`` runs
    (``fidelity``), decoded by annealed mean at ``temperature``, mixed, then boosted with each image's chroma
    scale at most ``boost_max`` (see ``VividEnsemble``)."""
    return VividEnsemble(vivid, fidelity, fidelity_weight, temperature, boost, boost_max)


vivid_ensemble.trainable = False  # what ``registry.trainable`` (``train --list``) reads

