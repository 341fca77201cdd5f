"""CIE Lab conversions: round trips, greyscale as L*, neutral greys, lightness kept by the Lab models."""

from __future__ import annotations

import pytest
import torch

from autocolor import colour


@pytest.fixture
def rgb() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_rgb_lab_rgb_round_trip(rgb):
    lab = colour.rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    assert (colour.lab_to_rgb(lab) - rgb).abs().max() < 1e-4


def test_lab_ranges_and_known_values():
    white_black_red = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    lab = colour.rgb_to_lab(white_black_red).flatten(1)
    assert torch.allclose(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05)
    assert torch.allclose(lab[1], torch.zeros(3), atol=0.05)
    assert torch.allclose(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.1)  # sRGB red, D65
    assert lab[:, 1:].abs().max() < colour.AB_SCALE


def test_greyscale_is_lightness_over_100(rgb):
    L = colour.greyscale(rgb)
    assert L.shape == (4, 1, 16, 16)
    assert torch.allclose(L, colour.rgb_to_lab(rgb)[:, :1] / 100.0)
    assert 0.0 <= float(L.min()) and float(L.max()) <= 1.0
    lab, L2 = colour.lab_and_input(rgb)
    assert torch.equal(L, L2) and torch.equal(lab, colour.rgb_to_lab(rgb))


def test_grey_rgb_is_neutral_and_keeps_lightness():
    L = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    grey = colour.grey_rgb(L)
    assert grey.shape == (2, 3, 8, 8)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    u8 = colour.to_uint8(grey)
    assert torch.equal(u8[:, 0], u8[:, 1]) and torch.equal(u8[:, 1], u8[:, 2])
    assert (colour.greyscale(grey) - L).abs().max() < 1e-5


def test_grey_photo_and_colour_original_get_the_same_input(rgb):
    """A colour image and its L*-preserving grey version are the same model input; a luma grey is not."""
    L = colour.greyscale(rgb)
    assert (colour.greyscale(colour.grey_rgb(L)) - L).abs().max() < 1e-5
    luma = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1).expand(-1, 3, -1, -1)
    assert (colour.greyscale(luma) - L).abs().max() > 0.01


def test_lab_from_keeps_lightness_after_8_bit_rounding():
    u8 = torch.randint(0, 256, (8, 3, 16, 16), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    lab, L = colour.lab_and_input(colour.to_float(u8))
    out = colour.to_uint8(colour.lab_from(L, lab[:, 1:]))
    assert (out.int() - u8.int()).abs().max() <= 1
    assert (colour.rgb_to_lab(colour.to_float(out))[:, :1] - lab[:, :1]).abs().max() < 0.5


def test_saturate(rgb):
    lab, L = colour.lab_and_input(rgb)
    ab = lab[:, 1:]
    assert torch.equal(colour.saturate(ab, 1.0), ab)
    assert torch.allclose(colour.saturate(ab, 2.0), 2 * ab)
    grey = colour.lab_from(L, colour.saturate(ab, 0.0))
    assert (grey.max(1).values - grey.min(1).values).max() < 1e-4
    assert torch.allclose(grey, colour.grey_rgb(L), atol=1e-4)


def test_uint8_float_conversions():
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = colour.to_float(u8)
    assert f.dtype == torch.float32 and float(f.max()) == 1.0
    assert torch.equal(colour.to_uint8(f), u8)
    assert colour.to_uint8(torch.tensor([-0.5, 0.4 / 255, 0.6 / 255, 1.5])).tolist() == [0, 0, 1, 255]
