"""autocolor: automatic colorization of greyscale images with convolutional autoencoders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Colorizer", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from autocolor.colorize import Colorizer


def __getattr__(name: str) -> Any:
    """Lazy exports, so ``import autocolor`` stays light (torch loads only when a Colorizer is used)."""
    if name == "Colorizer":
        from autocolor.colorize import Colorizer

        return Colorizer
    raise AttributeError(f"module 'autocolor' has no attribute {name!r}")
