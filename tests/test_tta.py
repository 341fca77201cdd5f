"""Test-time averaging of the fidelity U-Net: mirrored and translated views, each moved back into place."""

from __future__ import annotations

import pytest
import torch

from autocolor import models, registry  # noqa: F401 (importing models registers the architectures)
from autocolor.data import shift_images

SMALL = {"widths": (8, 16, 32)}


def _model(**config) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.build("unet", **SMALL, **config).eval()


def _reference(model, L: torch.Tensor) -> torch.Tensor:
    """Each view built with the training augmentation (``shift_images``), predicted, shifted back pixel by
    pixel; a pixel averages the views that had it inside the image."""
    n, _, h, w = L.shape
    total = count = None
    for flip, dy, dx in model.views():
        x = L.flip(-1) if flip else L
        x = shift_images(x, torch.full((n,), dy), torch.full((n,), dx))
        with torch.no_grad():
            pred = model.predict(x)
        stride = L.shape[-2] // pred.shape[-2]  # a half-resolution head (vivid) moves back by half the shift
        dy, dx, h, w = dy // stride, dx // stride, pred.shape[-2], pred.shape[-1]
        if total is None:
            total, count = torch.zeros_like(pred), torch.zeros(1, 1, h, w)
        back, seen = torch.zeros_like(total), torch.zeros_like(count)
        for r in range(h):
            for c in range(w):
                if 0 <= r + dy < h and 0 <= c + dx < w:  # output pixel (r, c) sat at (r + dy, c + dx) in the view
                    back[..., r, c], seen[..., r, c] = pred[..., r + dy, c + dx], 1
        total += back.flip(-1) * seen.flip(-1) if flip else back * seen
        count += seen.flip(-1) if flip else seen
    return total / count


@pytest.mark.parametrize("config", [{"flip_tta": True}, {"shift_tta": 1}, {"flip_tta": True, "shift_tta": 2},
                                    {"flip_tta": True, "shift_tta": 1, "stem": 2}])
def test_views_average_matches_explicit_shifts(config):
    model = _model(**config)
    L = torch.rand(3, 1, 16, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(L)
    assert out.shape == (3, 2, 16, 24)
    assert torch.allclose(out, _reference(model, L), atol=1e-5)


@pytest.mark.parametrize("config", [{"shift_tta": 2}, {"flip_tta": True, "shift_tta": 2}])
def test_vivid_shift_views_move_back_at_half_resolution(config):
    """unet-vivid's bins are at half resolution: a view translated by 2 pixels moves back by one bin pixel."""
    torch.manual_seed(0)
    model = registry.build("unet-vivid", **SMALL, **config).eval()
    L = torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(L)
    assert out.shape == (2, len(model.centres), 8, 12)
    assert torch.allclose(out, _reference(model, L), atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 2"):
        registry.build("unet-vivid", **SMALL, shift_tta=1)


def test_view_counts_and_plain_paths():
    assert len(_model(flip_tta=True, shift_tta=2).views()) == 10
    assert _model(shift_tta=1).views() == [(False, 0, 0), (False, 1, 0), (False, -1, 0), (False, 0, 1), (False, 0, -1)]
    L = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    plain, tta = _model(), _model(flip_tta=True, shift_tta=2)  # same seed: same weights
    with torch.no_grad():
        assert torch.equal(plain(L), plain.head(plain.features(L)))
        assert not torch.allclose(tta(L), plain(L), atol=1e-4)  # the views do change the prediction
        tta.train()
        assert torch.equal(tta(L), plain.train()(L))  # training never averages views


def test_shift_tta_range():
    with pytest.raises(ValueError, match="shift_tta"):
        _model(shift_tta=5)


def test_vivid_flip_tta_averages_the_mirrored_logits():
    """unet-vivid's ``flip_tta``: the bin logits (half resolution) of the input and of its mirror, flipped back,
    averaged; the decoded colours then differ from the single view's. Training still sees one view."""
    torch.manual_seed(0)
    plain = registry.build("unet-vivid", **SMALL).eval()
    torch.manual_seed(0)
    tta = registry.build("unet-vivid", **SMALL, flip_tta=True).eval()
    L = torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out, one, mirror = tta(L), plain(L), plain(L.flip(-1)).flip(-1)
        assert out.shape == one.shape == (2, len(tta.centres), 8, 12)
        assert torch.allclose(out, (one + mirror) / 2, atol=1e-5)
        assert not torch.allclose(tta.chroma(L, out), plain.chroma(L, one), atol=1e-3)
        assert torch.equal(tta.train()(L), plain.train()(L))
