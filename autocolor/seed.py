"""The seed system: the classic CIFAR-10 colorization autoencoder, layer for layer, in PyTorch.

Encoder: 3 blocks Conv2d(3x3, same) -> BatchNorm2d -> ReLU -> MaxPool2d(2), widths 64, 128, 256
(32 -> 16 -> 8 -> 4). Decoder: 3 blocks ConvTranspose2d(3x3, stride 1, same) -> BatchNorm2d -> ReLU ->
Upsample(x2), widths 256, 128, 64 (4 -> 8 -> 16 -> 32), then a 3x3 Conv2d head. 1.33M parameters.
``seed`` predicts RGB through a sigmoid and trains with MSE (as the Keras original);
``seed-lab`` has the same body, predicts a*, b* through tanh and keeps the input lightness exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from autocolor.nets import ColorNet
from autocolor.registry import register


def encoder_block(cin: int, cout: int) -> nn.Sequential:
    """Conv2D 3x3 -> BatchNormalization -> ReLU -> MaxPooling2D(2), the seed encoder's block."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


def decoder_block(cin: int, cout: int) -> nn.Sequential:
    """Conv2DTranspose 3x3 -> BatchNormalization -> ReLU -> UpSampling2D(2), the seed decoder's block."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Upsample(scale_factor=2, mode="nearest"))


class SeedAutoencoder(ColorNet):
    """Conv/BN/ReLU/MaxPool encoder, ConvTranspose/BN/ReLU/Upsample decoder, 3x3 conv head."""

    def __init__(self, output: str = "rgb", widths: tuple[int, ...] = (64, 128, 256)) -> None:
        super().__init__()
        self.output = output
        chans = [1, *widths]
        self.encoder = nn.Sequential(*[encoder_block(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        back = [widths[-1], *reversed(widths)]
        self.decoder = nn.Sequential(*[decoder_block(a, b) for a, b in zip(back[:-1], back[1:], strict=True)])
        self.head = nn.Conv2d(widths[0], 3 if output == "rgb" else 2, 3, padding=1)
        self.act = nn.Sigmoid() if output == "rgb" else nn.Tanh()
        self.size_multiple = 2 ** len(widths)  # one 2x pooling per encoder block

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (``seed``) or a*b* in [-1, 1] (``seed-lab``) from L*/100 (N, 1, H, W)."""
        return self.act(self.head(self.decoder(self.encoder(L))))


@register("seed")
def seed(widths: tuple[int, ...] = (64, 128, 256)) -> SeedAutoencoder:
    """The seed autoencoder, predicting RGB from grey (MSE)."""
    return SeedAutoencoder("rgb", tuple(widths))


@register("seed-lab")
def seed_lab(widths: tuple[int, ...] = (64, 128, 256)) -> SeedAutoencoder:
    """The seed body predicting Lab a*, b*; the output reuses the input's lightness."""
    return SeedAutoencoder("ab", tuple(widths))
