"""U-Net colorizers predicting Lab chroma from L*; the input lightness is kept exactly.

``unet``: regression of a*, b* (fidelity). ``objective="mse"`` is MSE on a*b*; ``objective="psnr"``
minimises the mean over images of log(MSE in RGB), i.e. maximises exactly the mean per-image PSNR
that evaluation reports (the RGB image is rebuilt from the kept L* and predicted a*b*).
``unet-vivid``: classification over quantized a*b* bins in the sRGB gamut (Zhang et al. 2016),
class-rebalanced by the training set's colour prior, decoded with an annealed mean whose
``temperature`` is a user knob (lower = more vivid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.color import lab_to_rgb as lab_to_rgb_unclipped_k
from torch import nn

from autocolor.colour import AB_SCALE, lab_to_rgb, rgb_to_lab, to_float
from autocolor.metrics import colourfulness_parts, ssim_map_float
from autocolor.nets import MAX_BOOST, ColorNet, check_boost_max
from autocolor.registry import register

GRID = 10.0  # a*b* bin size, as Zhang et al.


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 convolution (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two ``conv_bn_relu`` in a row: one U-Net level."""
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


def psnr_objective(ab: torch.Tensor, lab: torch.Tensor, rgb: torch.Tensor, ssim_weight: float = 0.0) -> torch.Tensor:
    """Mean over images of log10 RGB MSE of the image rebuilt from the kept L* and predicted a*b* (Lab units,
    full resolution): minimising it maximises the mean per-image PSNR that evaluation reports. ``ssim_weight``
    > 0 adds that weight x (1 - mean SSIM) of the rebuilt image, with the window ``evaluate`` uses."""
    pred = lab_to_rgb_unclipped_k(torch.cat([lab[:, :1], ab], 1), clip=False).clamp(0, 1)
    loss = torch.log10((pred - rgb).pow(2).flatten(1).mean(1) + 1e-5).mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1 - ssim_map_float(pred, rgb).mean())
    return loss


class UNet(ColorNet):
    """Encoder of double 3x3 conv blocks with max-pooling, decoder with nearest upsampling and skips."""

    output = "ab"

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), out_channels: int = 2,
                 objective: str = "mse", flip_tta: bool = False, context: bool = False, shift_tta: int = 0,
                 stem: int = 1, classes: int = 0, class_weight: float = 0.05, ssim_weight: float = 0.0) -> None:
        super().__init__()
        if classes < 0 or class_weight < 0 or ssim_weight < 0:
            raise ValueError(f"classes, class_weight and ssim_weight must be >= 0, got {classes}, {class_weight} "
                             f"and {ssim_weight}")
        if ssim_weight and objective != "psnr":
            raise ValueError("ssim_weight needs objective 'psnr' (it adds to the RGB objective)")
        self.ssim_weight = float(ssim_weight)
        if stem not in (1, 2, 4):
            raise ValueError(f"stem must be 1, 2 or 4, got {stem}")
        self.stem = int(stem)
        self.flip_tta = flip_tta
        if not 0 <= shift_tta <= 4:
            raise ValueError(f"shift_tta must be 0..4 pixels, got {shift_tta}")
        self.shift_tta = int(shift_tta)
        if objective not in ("mse", "psnr"):
            raise ValueError(f"unknown objective {objective!r}")
        self.objective = objective
        widths = tuple(widths)
        self.down = nn.ModuleList([double_conv(stem * stem, widths[0])])
        self.down.extend(double_conv(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.up = nn.ModuleList(double_conv(b + a, a) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Conv2d(widths[0], out_channels * stem * stem, 1)
        # optional image-level context (Iizuka et al. 2016 style): pooled bottleneck -> MLP -> added everywhere
        self.context = nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.ReLU(inplace=True),
                                     nn.Linear(widths[-1], widths[-1])) if context else None
        # optional auxiliary task (Iizuka et al. 2016): predict the image's class from the pooled bottleneck
        # while training, so the features the decoder sees carry semantics; unused at inference
        self.classify = nn.Linear(widths[-1], classes) if classes else None
        self.aux_weight = float(class_weight)  # (``class_weight`` is the vivid model's rebalancing buffer)
        self._logits: torch.Tensor | None = None

    @property
    def uses_labels(self) -> bool:
        """True when training needs the images' class labels (``classes`` > 0)."""
        return self.classify is not None

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (the stem and every pooling halve them)."""
        return self.stem * 2 ** (len(self.down) - 1)

    def features(self, L: torch.Tensor) -> torch.Tensor:
        """The decoder's last feature map for L*/100 (down the levels, then up with the skips)."""
        skips = []
        x = F.pixel_unshuffle(L, self.stem) if self.stem > 1 else L
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        pooled = x.mean((2, 3)) if self.context is not None or self.classify is not None else None
        if self.classify is not None and self.training:
            self._logits = self.classify(pooled)
        if self.context is not None:
            x = x + self.context(pooled)[:, :, None, None]
        for block, skip in zip(reversed(self.up), reversed(skips[-1 - len(self.up):-1]), strict=True):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1))
        return x

    def predict(self, L: torch.Tensor) -> torch.Tensor:
        """One view's raw output: head on the features, back to full resolution after a space-to-depth stem."""
        out = self.head(self.features(L))
        return F.pixel_shuffle(out, self.stem) if self.stem > 1 else out

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        """The raw prediction; in eval mode averaged over the test-time views the config asks for."""
        if self.training or not (self.flip_tta or self.shift_tta):
            return self.predict(L)
        # inference with test-time averaging over mirrored and/or translated views (see ``views``)
        total, weight = 0.0, 0.0
        for flip, dy, dx in self.views():
            x = L.flip(-1) if flip else L
            out, valid = self._shifted_prediction(x, dy, dx)
            out = out.float()  # average in float32 (bf16 sums of 10 views lose precision)
            if flip:
                out, valid = out.flip(-1), valid.flip(-1)
            total, weight = total + out * valid, weight + valid
        return total / weight

    def views(self) -> list[tuple[bool, int, int]]:
        """(mirrored, dy, dx) of each test-time view: the input, its mirror (``flip_tta``) and, with
        ``shift_tta=s``, each of those translated by s pixels up, down, left and right."""
        s = self.shift_tta
        shifts = [(0, 0)] + ([(s, 0), (-s, 0), (0, s), (0, -s)] if s else [])
        return [(flip, dy, dx) for flip in ((False, True) if self.flip_tta else (False,)) for dy, dx in shifts]

    def _shifted_prediction(self, L: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction for ``L`` translated by (dy, dx) with mirrored borders (as ``--shift`` trains), moved
        back into place, and a (1, 1, h, w) mask of the output pixels whose prediction saw them in the image.
        An output at 1/r of the input's resolution (the vivid head, r = 2) moves back by (dy/r, dx/r)."""
        if dy == 0 and dx == 0:
            out = self.predict(L)
            return out, torch.ones_like(out[:1, :1])
        p, (h, w) = max(abs(dy), abs(dx)), L.shape[-2:]
        x = F.pad(L, (p, p, p, p), mode="reflect")[..., p - dy:p - dy + h, p - dx:p - dx + w]
        out = self.predict(x)
        r = h // out.shape[-2]
        q, dy, dx, (h, w) = p // r, dy // r, dx // r, out.shape[-2:]
        out = F.pad(out, (q, q, q, q))[..., q + dy:q + dy + h, q + dx:q + dx + w]
        valid = F.pad(torch.ones_like(out[:1, :1]), (q, q, q, q))[..., q + dy:q + dy + h, q + dx:q + dx + w]
        return out, valid

    def loss(self, raw: torch.Tensor, lab: torch.Tensor, rgb: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
        """The colour objective; plus ``class_weight`` x cross-entropy of the auxiliary class prediction when
        ``labels`` are given to a model with ``classes`` (after a training-mode forward)."""
        if self.objective == "mse":
            colour = super().loss(raw, lab, rgb)
        else:
            colour = psnr_objective(raw.float() * AB_SCALE, lab, rgb, self.ssim_weight)
        return self._with_class_loss(colour, labels)

    def _with_class_loss(self, colour: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``colour`` plus the weighted cross-entropy of the auxiliary class prediction (when it applies)."""
        if labels is None or self.classify is None:
            return colour
        if self._logits is None or len(self._logits) != len(labels):
            raise RuntimeError("loss with labels needs a training-mode forward of the same batch first")
        logits, self._logits = self._logits, None
        return colour + self.aux_weight * F.cross_entropy(logits.float(), labels)


def gamut_bins(grid: float = GRID) -> torch.Tensor:
    """Centres (Q, 2) of a*b* grid cells that contain some in-gamut sRGB colour at some lightness."""
    r = torch.arange(-110.0, 110.0 + 1e-3, grid)
    a, b = torch.meshgrid(r, r, indexing="ij")
    centres = torch.stack([a.flatten(), b.flatten()], 1)
    offs = torch.linspace(-grid / 2, grid / 2, 5)
    oa, ob = torch.meshgrid(offs, offs, indexing="ij")
    pts = (centres[:, None, :] + torch.stack([oa.flatten(), ob.flatten()], 1)[None]).reshape(-1, 2)
    light = torch.arange(1.0, 100.0, 3.0)
    ok = torch.zeros(len(pts), dtype=torch.bool)
    for lv in light:
        lab = torch.cat([torch.full((len(pts), 1), float(lv)), pts], 1).T.reshape(1, 3, -1, 1)
        rgb = lab_to_rgb_unclipped(lab).reshape(3, -1)
        ok |= ((rgb >= 0) & (rgb <= 1)).all(0)
    keep = ok.reshape(len(centres), -1).any(1)
    return centres[keep]


def lab_to_rgb_unclipped(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> linear-then-gamma sRGB without clipping (to test gamut membership)."""
    return lab_to_rgb_unclipped_k(lab, clip=False)


class VividUNet(UNet):
    """U-Net with a per-pixel classifier over in-gamut a*b* bins, decoded by annealed mean.

    Like Zhang et al., the bin distribution is predicted at reduced resolution (here half: the finest
    decoder level is dropped) and the decoded a*b* is upsampled bilinearly; L* stays full resolution.
    """

    output = "bins"
    decodes = True
    head_stride = 2  # the bin distribution is predicted at half resolution

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), temperature: float = 0.38,
                 rebalance: float = 0.5, calibrate: bool = False, boost: float = 0.0,
                 context: bool = False, classes: int = 0, class_weight: float = 0.05, flip_tta: bool = False,
                 boost_centred: bool = False, shift_tta: int = 0, regress: float = 0.0, mix: float = 1.0,
                 boost_max: float = MAX_BOOST) -> None:
        if shift_tta % self.head_stride:
            raise ValueError(f"shift_tta must be a multiple of {self.head_stride} (the head's stride), got {shift_tta}")
        centres = gamut_bins()
        super().__init__(widths, out_channels=len(centres), objective="mse", context=context, classes=classes,
                         class_weight=class_weight, flip_tta=flip_tta, shift_tta=shift_tta)
        if regress < 0 or not 0 <= mix <= 1:
            raise ValueError(f"regress must be >= 0 and mix in [0, 1], got {regress} and {mix}")
        self.up = self.up[1:]
        self.bins = len(centres)
        self.regress, self.mix = float(regress), float(mix)
        # with ``regress`` the head also predicts a*b* / AB_SCALE directly (two more channels)
        self.head = nn.Conv2d(tuple(widths)[1], len(centres) + (2 if regress else 0), 1)
        self.temperature = temperature
        self.rebalance = rebalance
        self.calibrate = calibrate
        self.boost = boost
        self.boost_max = check_boost_max(boost_max)
        self.boost_centred = boost_centred
        self.register_buffer("centres", centres)
        self.register_buffer("class_weight", torch.ones(len(centres)))
        r = torch.arange(-110.0, 110.0 + 1e-3, GRID)
        self.grid_size = len(r)
        cells = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)
        self.register_buffer("grid_to_bin", torch.cdist(cells, centres).argmin(1), persistent=False)

    def nearest_bin(self, ab: torch.Tensor) -> torch.Tensor:
        """Index of the nearest in-gamut bin for every pixel of a*b* (N, 2, H, W) -> (N, H, W).

        The bins lie on a regular grid, so this is rounding plus a table lookup (no distance matrix).
        """
        cell = ((ab.float() + 110.0) / GRID).round().clamp(0, self.grid_size - 1).long()
        return self.grid_to_bin[cell[:, 0] * self.grid_size + cell[:, 1]]

    @torch.no_grad()
    def prepare(self, images: torch.Tensor, sigma: float = 5.0) -> None:
        """Set class weights from the colour prior of uint8 RGB ``images``: w ~ 1/((1-l)p + l/Q), mean 1."""
        device = self.centres.device  # the model may already sit on the GPU; the images stay on the CPU
        counts = torch.zeros(len(self.centres), device=device)
        for start in range(0, len(images), 2000):
            ab = rgb_to_lab(to_float(images[start:start + 2000].to(device)))[:, 1:]
            counts += torch.bincount(self.nearest_bin(ab).flatten(), minlength=len(self.centres)).float()
        prior = counts / counts.sum()
        d2 = torch.cdist(self.centres, self.centres).pow(2)
        smooth = torch.exp(-d2 / (2 * sigma**2))
        prior = (smooth / smooth.sum(1, keepdim=True)) @ prior
        w = 1.0 / ((1 - self.rebalance) * prior + self.rebalance / len(prior))
        self.class_weight.copy_(w / (w * prior).sum())

    def loss(self, raw: torch.Tensor, lab: torch.Tensor, rgb: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
        target = self.nearest_bin(F.avg_pool2d(lab[:, 1:], lab.shape[-1] // raw.shape[-1]))
        loss = F.cross_entropy(raw[:, :self.bins].float(), target, weight=self.class_weight)
        if self.regress:
            # the direct a*b* is trained like ``unet``'s objective "psnr", upsampled to full resolution
            ab = F.interpolate(raw[:, self.bins:].float() * AB_SCALE, size=lab.shape[-2:], mode="bilinear",
                               align_corners=False)
            loss = loss + self.regress * psnr_objective(ab, lab, rgb)
        return self._with_class_loss(loss, labels)

    def chroma(self, L: torch.Tensor, raw: torch.Tensor, temperature: float | None = None,
               boost: float | None = None, calibrate: bool | None = None, boost_max: float | None = None,
               **opts: float | None) -> torch.Tensor:
        """Annealed mean of the bin distribution; ``boost`` > 0 then scales each image's chroma by at most
        ``boost_max`` (see ``boost_factor``).

        ``None`` options take the model's own settings (from its card)."""
        t = self.temperature if temperature is None else temperature
        logits = raw[:, :self.bins].float()
        if self.calibrate if calibrate is None else calibrate:
            # undo the rebalancing: weighted cross-entropy learns p * w, so p ~ softmax(logits - log w)
            logits = logits - self.class_weight.log()[None, :, None, None]
        p = torch.softmax(logits / max(t, 1e-3), dim=1)
        ab = mean = torch.einsum("nqhw,qc->nchw", p, self.centres)
        if self.regress:  # the decoded mean: ``mix`` x the direct a*b* + (1 - ``mix``) x the annealed mean
            ab = self.mix * raw[:, self.bins:].float() * AB_SCALE + (1 - self.mix) * mean
        b = self.boost if boost is None else boost
        if b > 0:
            origin = self.boost_origin(ab)
            cap = self.boost_max if boost_max is None else boost_max
            ab = origin + (ab - origin) * self.boost_factor(L, p, ab, b, mean=mean, max_scale=cap)
        return F.interpolate(ab, size=L.shape[-2:], mode="bilinear", align_corners=False)

    def boost_origin(self, ab: torch.Tensor) -> torch.Tensor:
        """What the boost scales about: each image's mean a*b* with ``boost_centred``, else grey (0)."""
        return ab.mean((2, 3), keepdim=True) if self.boost_centred else torch.zeros_like(ab[:, :, :1, :1])

    def boost_factor(self, L: torch.Tensor, p: torch.Tensor, ab: torch.Tensor, strength: float,
                     mean: torch.Tensor | None = None, max_scale: float = MAX_BOOST) -> torch.Tensor:
        """Per-image chroma scale s >= 1 trading expected error for colourfulness (shape (N, 1, 1, 1)).

        With mean ``ab`` and per-pixel variance v of the predicted distribution, scaling by s has expected
        squared a*b* error v + (s-1)^2 |ab|^2 and colourfulness about s * c (c: Hasler-Suesstrunk of the
        unscaled image). Each image takes the s on a grid in [1, 5] minimising log(expected error + 1) -
        strength * s * c. A certain prediction stays as it is (any boost is pure error); where the expected
        error is large anyway, extra colour costs little PSNR and is added.

        With ``boost_centred`` the scale applies to each pixel's deviation d from the image's mean a*b*
        instead (colour contrast, the tint kept): the error term is v + (s-1)^2 |d|^2 and c is the colour
        spread sigma alone, the part of Hasler-Suesstrunk colourfulness that grows with s.

        v is about the distribution's own mean, ``mean`` (computed from ``p`` when not given); it differs from
        ``ab`` only when a ``regress`` model mixes its direct a*b* in.

        ``max_scale`` (checked by ``check_boost_max``) then caps s. The log makes extra colour cheapest where
        the expected error is large, so uncapped, images the model is unsure of (near-grey means) tend to take the
        largest scales, which paints colour the model does not know; a cap limits that.
        """
        max_scale = check_boost_max(max_scale)
        if mean is None:
            mean = torch.einsum("nqhw,qc->nchw", p, self.centres)
        var = (torch.einsum("nqhw,q->nhw", p, self.centres.pow(2).sum(1)) - mean.pow(2).sum(1)).clamp_min(0)
        v, m2 = var.flatten(1).mean(1), (ab - self.boost_origin(ab)).pow(2).sum(1).flatten(1).mean(1)
        small = F.avg_pool2d(L.float(), self.head_stride)  # L* at the head's (half) resolution
        sigma, mu = colourfulness_parts(lab_to_rgb(torch.cat([small * 100.0, ab], 1)) * 255.0)
        c = sigma if self.boost_centred else sigma + 0.3 * mu
        scales = torch.linspace(1.0, MAX_BOOST, 81, device=ab.device)
        cost = torch.log(v[:, None] + (scales[None] - 1).pow(2) * m2[:, None] + 1.0) - strength * scales * c[:, None]
        return scales[cost.argmin(1)].clamp(max=max_scale)[:, None, None, None]


@register("unet")
def unet(widths: tuple[int, ...] = (32, 64, 128, 256), objective: str = "psnr", flip_tta: bool = False,
         context: bool = False, shift_tta: int = 0, stem: int = 1, classes: int = 0,
         class_weight: float = 0.05, ssim_weight: float = 0.0) -> UNet:
    """Fidelity U-Net: a*b* regression (default objective: mean per-image PSNR); ``flip_tta`` averages the
    prediction with that of the mirrored input at inference, ``shift_tta=s`` also with inputs translated by
    s pixels each way; ``context`` adds an image-level feature; ``stem=2`` runs the net on 2x2 space-to-depth
    blocks of L* (half resolution, 4 channels) and depth-to-space's the a*b* back to full resolution;
    ``classes=10`` trains an auxiliary CIFAR-10 class prediction (weight ``class_weight``; needs labels);
    ``ssim_weight`` > 0 adds that weight x (1 - SSIM) of the rebuilt RGB image to the "psnr" objective."""
    return UNet(widths, objective=objective, flip_tta=flip_tta, context=context, shift_tta=shift_tta, stem=stem,
                classes=classes, class_weight=class_weight, ssim_weight=ssim_weight)


@register("unet-vivid")
def unet_vivid(widths: tuple[int, ...] = (32, 64, 128, 256), temperature: float = 0.38, rebalance: float = 0.5,
               calibrate: bool = False, boost: float = 0.0, context: bool = False, classes: int = 0,
               class_weight: float = 0.05, flip_tta: bool = False, boost_centred: bool = False,
               shift_tta: int = 0, regress: float = 0.0, mix: float = 1.0, boost_max: float = MAX_BOOST) -> VividUNet:
    """Vivid U-Net: a*b* bin classification with rebalancing, annealed-mean decoding; ``calibrate`` undoes the
    rebalancing at decode time and ``boost`` adds the per-image colour boost (``VividUNet.boost_factor``),
    about grey or, with ``boost_centred``, about the image's mean a*b*; ``flip_tta`` averages the bin logits
    with those of the mirrored input at inference, ``shift_tta`` (even) also with inputs translated each way;
    ``regress`` > 0 adds a direct a*b* output trained by the "psnr" objective with that weight, and the decoded
    mean is then ``mix`` x that a*b* + (1 - ``mix``) x the annealed mean (the boost still uses the bins' spread);
    ``boost_max`` caps the boost's per-image chroma scale (1 to 5; 5, the default, is no cap)."""
    return VividUNet(widths, temperature, rebalance, calibrate, boost, context, classes, class_weight, flip_tta,
                     boost_centred, shift_tta, regress, mix, boost_max)

