"""The training checkpoint (``checkpoint.pt`` in a run folder): written atomically, read back with checks, and the
settings and random state ``--resume`` needs from it."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from autocolor import distributed as ddp
from autocolor.errors import AutocolorError, first_line
from autocolor.files import atomic_write_bytes

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "step", "records", "seconds", "loss_sum",
                   "seen", "config")


def save(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path) -> dict:
    if not path.is_file():
        raise AutocolorError(f"--resume: no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a user-facing error
        raise AutocolorError(f"cannot read checkpoint {path}: {first_line(exc)}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ck] if isinstance(ck, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise AutocolorError(f"{path} is not an autocolor training checkpoint (no {', '.join(missing)})")
    return ck


def setting(key: str, value):
    """A run setting as ``--resume`` compares it: image folders by their resolved path."""
    if key in ("images", "val_images") and value:
        return str(Path(value).expanduser().resolve())
    return value


def rank_rng(ck: dict, info: ddp.DistInfo) -> torch.Tensor:
    ranks = ck.get("rng_ranks") or []
    return ranks[info.rank] if len(ranks) == info.world else ck["rng"]
