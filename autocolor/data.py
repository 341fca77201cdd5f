"""CIFAR-10 in the official python layout: locate, load safely, validate, batch and augment in bulk."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autocolor.download import FOLDER, download_cifar10
from autocolor.errors import AutocolorError, first_line

ENV_VAR = "AUTOCOLOR_DATA"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
VAL_SIZE = 5000
VAL_SEED = 20240521
CLASSES = 10

# Only what numpy needs to rebuild an array; everything else in a pickle is refused. Protocol 2 stores an
# array's bytes through ``_codecs.encode`` and protocol 5 through ``numeric._frombuffer``: both only build data.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _Forbidden(pickle.UnpicklingError):
    """The pickle names a global outside ``_ALLOWED`` (possibly code to run)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Forbidden(f"forbidden global {module}.{name}")


def refetch_hint(path: Path) -> str:
    """How to get a good copy back: a download for the cache autocolor fills itself, else a fresh copy."""
    cache = Path("~/.cache/autocolor").expanduser().resolve()
    if Path(path).resolve().is_relative_to(cache):
        return f"delete {cache / FOLDER} and run again to download a fresh copy"
    return f"replace {Path(path).parent} with a fresh copy of CIFAR-10's python version"


def safe_unpickle(path: Path) -> object:
    """Unpickle a CIFAR batch allowing only numpy arrays and plain containers (bytes keys)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:  # permissions, I/O: the file may be fine
        raise AutocolorError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Forbidden as exc:
        raise AutocolorError(f"refusing to load {path}: {exc}") from None
    except MemoryError:
        raise AutocolorError(f"not enough memory to read {path}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises anything (Overflow, Lookup...)
        raise AutocolorError(f"corrupt or truncated CIFAR-10 batch {path}: {first_line(exc)}; "
                             f"{refetch_hint(path)}") from None


@dataclass
class Split:
    """A whole split in memory: ``images`` uint8 (N, 3, 32, 32), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice) -> Split:
        """The images and labels at ``index`` (a view for slices)."""
        return Split(self.images[index], self.labels[index])


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise AutocolorError(f"missing CIFAR-10 file {path}; {refetch_hint(path)}")
    obj = safe_unpickle(path)
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise AutocolorError(f"corrupt CIFAR-10 batch {path}: expected a dict with b'data' and b'labels'")
    data, labels = obj[b"data"], np.asarray(obj[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise AutocolorError(f"corrupt CIFAR-10 batch {path}: data must be uint8 of shape (N, 3072)")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise AutocolorError(f"corrupt CIFAR-10 batch {path}: labels must be a list of integers, got "
                             f"{labels.dtype} of shape {labels.shape}")
    if len(labels) != data.shape[0]:
        raise AutocolorError(f"corrupt CIFAR-10 batch {path}: {len(labels)} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= CLASSES):
        raise AutocolorError(f"corrupt CIFAR-10 batch {path}: labels outside 0..9")
    return data, labels


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the dataset is looked for, in order: --data, $AUTOCOLOR_DATA, ~/.cache/autocolor, ~/.keras/datasets."""
    roots = [Path(p).expanduser() for p in (data_dir, os.environ.get(ENV_VAR)) if p]
    return roots + [Path("~/.cache/autocolor").expanduser(), Path("~/.keras/datasets").expanduser()]


def _as_folder(root: Path) -> Path | None:
    for cand in (root / FOLDER, root):
        if (cand / "test_batch").is_file() and (cand / "data_batch_1").is_file():
            return cand
    return None


def locate(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the ``cifar-10-batches-py`` folder, downloading into ~/.cache/autocolor if none is found."""
    if data_dir is not None and not str(data_dir).strip():
        raise AutocolorError("--data: empty path")
    roots = candidate_roots(data_dir)
    explicit = f"--data {data_dir}" if data_dir is not None else \
        f"{ENV_VAR}={roots[0]}" if os.environ.get(ENV_VAR) else None
    if explicit and _as_folder(roots[0]) is None:  # --data or $AUTOCOLOR_DATA never falls back silently
        if not roots[0].exists():
            raise AutocolorError(f"{explicit}: no such folder")
        archive = " (it holds the archive: unpack it there with tar xzf)" if any(
            roots[0].glob("cifar-10-python.tar.gz")) else ""
        raise AutocolorError(f"{explicit}: no {FOLDER}/ with data_batch_1..5 and test_batch there{archive}")
    for root in roots:
        if (found := _as_folder(root)) is not None:
            return found
    tried = ", ".join(str(r) for r in roots)
    if not download:
        raise AutocolorError(f"CIFAR-10 not found (looked in {tried}); pass --data DIR or set {ENV_VAR}")
    try:
        return download_cifar10(Path("~/.cache/autocolor").expanduser())
    except AutocolorError as exc:
        raise AutocolorError(
            f"CIFAR-10 not found (looked in {tried}) and {exc}; put {FOLDER}/ in one of those places, "
            f"or pass --data DIR / set {ENV_VAR}"
        ) from None


def load_split(split: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Split:
    """Load ``train`` (45,000), ``val`` (5,000 held out of train), ``trainval`` (50,000) or ``test`` (10,000)."""
    if split not in ("train", "val", "trainval", "test"):
        raise AutocolorError(f"unknown split {split!r}; use train, val, trainval or test")
    folder = locate(data_dir, download=download)
    files = TEST_FILES if split == "test" else TRAIN_FILES
    parts = [_read_batch(folder / name) for name in files]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    full = Split(torch.from_numpy(data).view(-1, 3, 32, 32).contiguous(), torch.from_numpy(labels))
    if split in ("test", "trainval"):
        return full
    if split == "train" and len(full) <= VAL_SIZE:
        raise AutocolorError(f"{folder}: {len(full)} training images, and the {VAL_SIZE:,} held out for validation "
                             "leave none to train on; train on all of them (the trainval split: "
                             "`autocolor train --final-fit`, `python -m autocolor.classifier --split trainval`) or "
                             "use a larger copy of CIFAR-10")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(VAL_SEED))
    return full.subset(order[:VAL_SIZE] if split == "val" else order[VAL_SIZE:].sort().values)


def class_names(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The ten label names from ``batches.meta``."""
    meta = safe_unpickle(locate(data_dir, download=False) / "batches.meta")
    return [n.decode() for n in meta[b"label_names"]]


def shift_images(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Translate each image of ``images`` (N, C, H, W) by (dy[i], dx[i]) pixels, mirroring at the borders."""
    n, _, h, w = images.shape

    def mirror(idx: torch.Tensor, size: int) -> torch.Tensor:
        idx = idx.abs()  # reflect below 0 (edge pixel not repeated), then above size - 1
        return torch.where(idx > size - 1, 2 * (size - 1) - idx, idx)

    rows = mirror(torch.arange(h)[None] - dy[:, None], h)  # (N, H): source row of each output row
    cols = mirror(torch.arange(w)[None] - dx[:, None], w)
    out = images[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float pixel values in 0..255 -> uint8, rounded to nearest and clipped."""
    return x.round_().clamp_(0, 255).to(torch.uint8)


def zoom_images(images: torch.Tensor, scale: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zoom each uint8 image of ``images`` (N, C, H, W) in by ``scale[i]`` >= 1 (bilinear), keeping its size.

    ``cy``/``cx`` in [-1, 1] place the crop: -1 its top/left edge, 0 the centre, 1 the bottom/right edge.
    A scale of 1 returns the image unchanged.
    """
    inv = 1.0 / scale.float()
    theta = torch.zeros(len(images), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = inv
    theta[:, 0, 2] = cx.float() * (1 - inv)  # affine_grid's x is the width axis
    theta[:, 1, 2] = cy.float() * (1 - inv)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _to_uint8(out)


def contrast_images(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each uint8 image's contrast about its own mean (over pixels and channels) by ``factor[i]``, clipped."""
    x = images.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    out = mean + factor.float().view(-1, 1, 1, 1) * (x - mean)
    return _to_uint8(out)


def epoch_batches(split: Split, batch_size: int, seed: int, epoch: int, augment: bool = True,
                  shard: tuple[int, int] = (0, 1), shift: int = 0,
                  zoom: float = 0.0, contrast: float = 0.0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield uint8 image batches (and labels) for one epoch: seeded shuffle, bulk horizontal flips and,
    with ``shift=S``, random translations of up to S pixels each way (mirrored borders); with ``zoom=Z``,
    random zooms in by 1 to 1 + Z at a random position (applied before the shifts); with ``contrast=C``, each
    image's contrast scaled by 1 - C to 1 + C about its mean.

    The order and every random augmentation depend only on (seed, epoch), so a resumed run sees the same batches.
    ``shard=(rank, world)`` gives each process its slice of every global batch (for DDP).
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(split), generator=gen)
    flips = torch.rand(len(split), generator=gen) < 0.5
    if shift:  # drawn after the flips, so runs without shifts see the same order and flips as before
        offsets = torch.randint(-shift, shift + 1, (len(split), 2), generator=gen)
    if zoom:  # drawn after the shifts, so runs without zooms see the same batches as before
        scales = 1 + zoom * torch.rand(len(split), generator=gen)
        centres = torch.rand(len(split), 2, generator=gen) * 2 - 1
    if contrast:  # drawn after all the others, which stay as they were
        factors = 1 + contrast * (torch.rand(len(split), generator=gen) * 2 - 1)
    rank, world = shard
    n_batches = len(split) // batch_size
    for b in range(n_batches):
        idx = order[b * batch_size:(b + 1) * batch_size][rank::world]
        imgs = split.images[idx]
        if augment:
            f = flips[idx]
            imgs[f] = imgs[f].flip(-1)
            if zoom:
                imgs = zoom_images(imgs, scales[idx], centres[idx, 0], centres[idx, 1])
            if shift:
                imgs = shift_images(imgs, offsets[idx, 0], offsets[idx, 1])
            if contrast:
                imgs = contrast_images(imgs, factors[idx])
        yield imgs, split.labels[idx]
