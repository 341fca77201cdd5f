"""Train and evaluate on your own photos: scan an image folder, skip what carries no colour, stream crops.

``scan`` walks a folder tree once (cheaply: ``verify`` plus a drafted thumbnail) and sorts files into
usable colour images, greyscale images (no colour to learn from) and unreadable files. ``FolderDataset``
then decodes images lazily in DataLoader workers: random-resized crops + horizontal flips for training,
centre crops for validation/evaluation, all at one square ``image_size``. A file that fails at load time
is replaced by its neighbour and reported, never a crash.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from autocolor.errors import AutocolorError, first_line
from autocolor.files import IMAGE_EXTS, image_files
from autocolor.imageio import to_srgb

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
GREY_TOLERANCE = 4  # an RGB image whose channels never differ by more than this (0..255) is grey
THUMB = 64  # side of the drafted thumbnail used for the greyscale test
VAL_SEED = 20240521
CROP_SCALE = (0.25, 1.0)  # random-resized crop: fraction of the image area
CROP_RATIO = (3 / 4, 4 / 3)  # and aspect ratio range
LOAD_RETRIES = 8
SHOW = 5  # how many skipped names a summary lists


@dataclass
class FolderScan:
    """The result of scanning one folder: usable ``files`` and the skipped ones with reasons."""

    root: str
    files: list[str] = field(default_factory=list)
    grey: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many images were found and what was skipped (first few names)."""
        parts = [f"{self.root}: {len(self.files):,} colour images"]
        if self.grey:
            names = ", ".join(_rel(p, self.root) for p in self.grey[:SHOW])
            parts.append(f"skipped {len(self.grey):,} greyscale ({names}{', ...' if len(self.grey) > SHOW else ''})")
        if self.bad:
            names = "; ".join(f"{_rel(p, self.root)}: {why}" for p, why in self.bad[:SHOW])
            parts.append(f"skipped {len(self.bad):,} unreadable ({names}{'; ...' if len(self.bad) > SHOW else ''})")
        return ", ".join(parts)


def _rel(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def list_images(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[str]:
    """Every file under ``root`` (recursively, following links, each file once) with an image extension, sorted;
    ``exclude``'s folder is left out."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise AutocolorError(f"image folder {root} does not exist or is not a folder")
    return image_files(root, exclude)


def _short(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 120 characters), or the bare type without a message."""
    text = first_line(exc)
    return text if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"[:120]


def check_image(path: str) -> str | None:
    """``None`` for a usable colour image, ``"grey"`` for a greyscale one, else why it cannot be read."""
    try:  # Pillow's warnings are silenced by ``scan`` around its threads (catch_warnings is not thread-safe)
        with Image.open(path) as im:
            im.verify()  # cheap structural check (PNG CRCs, headers); the image must be reopened after it
        with Image.open(path) as im:
            if im.mode in GREY_MODES:
                return "grey"
            im.draft("RGB", (THUMB, THUMB))  # JPEG: decode at 1/2..1/8 scale
            im.thumbnail((THUMB, THUMB))  # forces a full decode: truncated files fail here
            rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    except Exception as exc:  # noqa: BLE001 - any failure to decode means "unreadable", never a crash
        return _short(exc)
    if rgb.size == 0:
        return "empty image"
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return "grey" if int(spread.max()) <= GREY_TOLERANCE else None


def scan(root: str | os.PathLike, workers: int = 0, exclude: str | os.PathLike | None = None) -> FolderScan:
    """Find the usable colour images under ``root`` (checked in ``workers`` threads, at least one), leaving out
    ``exclude``'s folder."""
    files = list_images(root, exclude)
    result = FolderScan(str(Path(root).expanduser()))
    with warnings.catch_warnings(), ThreadPoolExecutor(max(1, workers)) as pool:
        warnings.simplefilter("ignore")  # set once, here, for the threads (each one setting it is not thread-safe)
        verdicts = list(pool.map(check_image, files, chunksize=16))
    for path, verdict in zip(files, verdicts, strict=True):
        if verdict is None:
            result.files.append(path)
        elif verdict == "grey":
            result.grey.append(path)
        else:
            result.bad.append((path, verdict))
    if not result.files:
        what = f"{len(files)} image file(s), none usable" if files else f"no {'/'.join(IMAGE_EXTS)} files"
        raise AutocolorError(f"image folder {result.root}: {what} ({result.summary()})")
    return result


@dataclass
class FolderSplit:
    """Training and validation files chosen from one or two scanned folders, plus a description."""

    train: list[str]
    val: list[str]
    scans: list[FolderScan]
    description: str


def scan_option(flag: str, root: str | os.PathLike, workers: int = 0,
              exclude: str | os.PathLike | None = None) -> FolderScan:
    """``scan``, with its errors naming the option the folder came from."""
    try:
        return scan(root, workers, exclude)
    except AutocolorError as exc:
        raise AutocolorError(f"{flag}: {exc}") from None


def split_folders(images: str, val_images: str | None = None, val_fraction: float = 0.05,
                  max_images: int | None = None, workers: int = 0,
                  exclude: str | os.PathLike | None = None) -> FolderSplit:
    """Scan ``images`` (and ``val_images``); hold out a fixed seeded ``val_fraction`` when no val folder.
    ``exclude`` (the run's own folder, when it lies inside the photos) is never scanned."""
    main = scan_option("--images", images, workers, exclude)
    order = torch.randperm(len(main.files), generator=torch.Generator().manual_seed(VAL_SEED)).tolist()
    shuffled = [main.files[i] for i in order]
    scans = [main]
    if val_images:
        val_scan = scan_option("--val-images", val_images, workers, exclude)
        scans.append(val_scan)
        held = {os.path.realpath(f) for f in val_scan.files}
        train, val = [f for f in shuffled if os.path.realpath(f) not in held], val_scan.files
        if not train:
            raise AutocolorError(f"every image of {main.root} is also in --val-images {val_scan.root}; validation "
                                 "images must not be trained on")
        dropped = len(shuffled) - len(train)
        source = f"validation on the {len(val):,} colour images of {val_scan.root}" + (
            f" ({dropped:,} of them also under {main.root}, left out of training)" if dropped else "")
    else:
        if not 0 < val_fraction < 1:
            raise AutocolorError(f"--val-fraction must be between 0 and 1, not {val_fraction}")
        n_val = max(1, round(len(shuffled) * val_fraction))
        if n_val >= len(shuffled):
            raise AutocolorError(f"{main.root}: {len(shuffled)} colour image(s) are too few to hold out "
                                 f"{val_fraction:.0%} for validation; add images or pass --val-images DIR")
        val, train = shuffled[:n_val], shuffled[n_val:]
        source = f"{len(val):,} held out for validation (seeded {val_fraction:g} fraction)"
    if max_images:
        train = train[:max_images]
        val = val[:min(len(val), max(256, max_images // 5))]
    skipped = sum(len(s.grey) for s in scans), sum(len(s.bad) for s in scans)
    desc = (f"image folder {main.root}: {len(train):,} images for training, {source}; "
            f"skipped {skipped[0]:,} greyscale and {skipped[1]:,} unreadable files")
    return FolderSplit(sorted(train), sorted(val), scans, desc)


def open_rgb(path: str, min_side: int) -> Image.Image:
    """Decode ``path`` as RGB (EXIF orientation applied; JPEGs drafted down to about ``min_side``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            im.draft("RGB", (min_side, min_side))
            im = to_srgb(ImageOps.exif_transpose(im))  # a profile is read as colorize reads it
            return im.convert("RGB")


def centre_crop(im: Image.Image, size: int) -> Image.Image:
    """Largest centred square, resized to ``size`` x ``size`` (shorter side to ``size``, then crop)."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)


def random_resized_crop(im: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A random crop of 25-100 % of the area and aspect 3/4..4/3, resized to ``size`` x ``size``."""
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = float(np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1]))))
        cw, ch = (target * ratio) ** 0.5, (target / ratio) ** 0.5
        if cw <= w and ch <= h:
            left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            return im.resize((size, size), Image.BICUBIC, box=(left, top, left + cw, top + ch), reducing_gap=3.0)
    return centre_crop(im, size)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class FolderDataset(Dataset):
    """Images decoded on demand: ``(uint8 (3, S, S), failed)``; ``failed`` is -1 or the index that failed.

    Training crops and flips depend only on (``seed``, ``epoch``, index), so they are the same whatever
    the number of workers or processes; set ``epoch`` before each epoch (workers are re-created per epoch).
    """

    def __init__(self, files: list[str], image_size: int, train: bool, seed: int = 0) -> None:
        if image_size < 8 or image_size % 8:
            raise AutocolorError(f"--image-size must be a multiple of 8 (at least 8), not {image_size}")
        self.files, self.size, self.train, self.seed, self.epoch = list(files), image_size, train, seed, 0

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        """One crop as uint8 (3, S, S); raises on an unreadable file."""
        if not self.train:
            return to_tensor(centre_crop(open_rgb(self.files[index], self.size), self.size))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        im = random_resized_crop(open_rgb(self.files[index], 2 * self.size), self.size, rng)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(im)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        failed = -1
        n = len(self.files)
        stride = 1 if n <= LOAD_RETRIES else n // LOAD_RETRIES + 1  # tries spread over the folder, so a deleted
        while math.gcd(stride, n) != 1:                              # sub-folder of neighbours cannot use them all up
            stride += 1                                               # (coprime: no file is tried twice)
        for attempt in range(LOAD_RETRIES):
            i = (index + attempt * stride) % n
            try:
                return self.load(i), failed
            except Exception as exc:  # noqa: BLE001 - a file changed or broke after the scan: use a neighbour
                if failed < 0:
                    failed = i
                    print(f"autocolor: warning: cannot load {self.files[i]} ({_short(exc)}); using another image",
                          file=sys.stderr)
        tried = min(LOAD_RETRIES, n)
        raise AutocolorError(f"{self.files[index]} and {tried - 1} other image(s) tried in its place failed to load; "
                             "is the folder still readable?")


class ShardSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle, ``set_epoch``) that can start part-way, for resuming an epoch."""

    start = 0  # samples of this rank's share to skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def train_loader(dataset: FolderDataset, local_batch: int, rank: int, world: int, seed: int, workers: int,
                 pin: bool) -> tuple[DataLoader, ShardSampler]:
    """Shuffled, sharded training batches of ``local_batch`` images per process (incomplete batch dropped)."""
    sampler = ShardSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, drop_last=True, num_workers=workers,
                        pin_memory=pin, prefetch_factor=4 if workers else None)
    return loader, sampler


def eval_loader(dataset: FolderDataset, batch: int, rank: int = 0, world: int = 1, workers: int = 0,
                pin: bool = False) -> DataLoader:
    """This rank's share (every ``world``-th image from ``rank``) of an evaluation set, in order."""
    part = Subset(dataset, range(rank, len(dataset), world))
    return DataLoader(part, batch_size=batch, shuffle=False, num_workers=workers, pin_memory=pin)


def load_stack(dataset: FolderDataset, n: int) -> torch.Tensor:
    """The first ``n`` images of ``dataset`` as one uint8 batch (for sample grids and colour priors)."""
    return torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])
