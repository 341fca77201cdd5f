"""PNG outputs: image grids (grey | predicted | original) and loss curves (matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from autocolor.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_png(image: Image.Image, path: Path) -> Path:
    """Save a PIL image as PNG atomically."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def grid(columns: list[torch.Tensor], scale: int = 3, gap: int = 2) -> Image.Image:
    """Lay out uint8 batches (N, 3, H, W) as columns (e.g. grey, predicted, original), one image per row."""
    n, _, h, w = columns[0].shape
    cell_h, cell_w = h * scale, w * scale
    sheet = Image.new("RGB", (len(columns) * (cell_w + gap) - gap, n * (cell_h + gap) - gap), "white")
    for c, batch in enumerate(columns):
        for r in range(n):
            tile = Image.fromarray(batch[r].permute(1, 2, 0).contiguous().numpy())
            sheet.paste(tile.resize((cell_w, cell_h), Image.NEAREST), (c * (cell_w + gap), r * (cell_h + gap)))
    return sheet


def tiled_grid(columns: list[torch.Tensor], per_block: int = 8, scale: int = 3) -> Image.Image:
    """Several ``grid`` blocks side by side, so 32 examples fit one wide, short sheet."""
    n = columns[0].shape[0]
    blocks = [grid([c[i:i + per_block] for c in columns], scale) for i in range(0, n, per_block)]
    sheet = Image.new("RGB", (sum(b.width for b in blocks) + 8 * (len(blocks) - 1), blocks[0].height), "white")
    x = 0
    for b in blocks:
        sheet.paste(b, (x, 0))
        x += b.width + 8
    return sheet


def loss_curve(records: list[dict], path: Path) -> Path:
    """Plot train and validation loss per epoch (left) and validation PSNR, with SSIM where recorded (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    ax.plot(epochs, [r["train_loss"] for r in records], "o-", label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in records], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    ax2.plot(epochs, [r["val_psnr"] for r in records], "^-", color="tab:green", label="val PSNR")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation PSNR (dB)")
    ax2.legend(loc="upper left")
    with_ssim = [r for r in records if "val_ssim" in r]  # runs before val_ssim was recorded have none
    if with_ssim:
        ax3 = ax2.twinx()
        ax3.plot([r["epoch"] for r in with_ssim], [r["val_ssim"] for r in with_ssim], "v--", color="tab:purple",
                 label="val SSIM")
        ax3.set_ylabel("validation SSIM")
        ax3.legend(loc="lower right")
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
