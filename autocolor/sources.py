"""Where training images come from: CIFAR-10 in memory, or an image folder streamed from disk, each as a ``Data``
(batches for an epoch from a given step, the validation share, the sample-sheet images, the colour prior's images)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from autocolor import distributed as ddp
from autocolor.data import Split, epoch_batches, load_split
from autocolor.errors import AutocolorError
from autocolor.folders import FolderDataset, eval_loader, load_stack, split_folders, train_loader

if TYPE_CHECKING:
    from autocolor.train import TrainConfig

GRID_IMAGES = 16
DEFAULT_IMAGE_SIZE = 128  # crop side for image folders
PRIOR_PIXELS = 20_000_000  # pixels of training crops a model.prepare() colour prior is estimated from


def cifar_splits(cfg: TrainConfig) -> tuple[Split, Split]:
    train, val = load_split("trainval" if cfg.final_fit else "train", cfg.data), load_split("val", cfg.data)
    if cfg.max_images:
        train = train.subset(slice(0, cfg.max_images))
        val = val.subset(slice(0, min(len(val), max(256, cfg.max_images // 5))))
    if len(train) < cfg.batch_size:
        raise AutocolorError(f"--batch-size {cfg.batch_size} is larger than the {len(train)} training images")
    return train, val


@dataclass
class Data:
    """What the loop needs from a data source (CIFAR-10 in memory, or an image folder streamed from disk)."""

    n_train: int
    n_val: int
    steps: int  # optimizer steps (global batches) per epoch
    val: object  # Split or folder DataLoader (this rank's share)
    grid: torch.Tensor  # uint8 validation images for the per-epoch sample sheet (rank 0)
    description: str
    image_size: int
    # (epoch, first step) -> this rank's (uint8 images, int64 labels or None) batches
    batches: Callable[[int, int], Iterator[tuple[torch.Tensor, torch.Tensor | None]]]
    prior: Callable[[], torch.Tensor]  # training images for ``model.prepare`` (colour priors)
    failures: list = field(default_factory=list)  # files that failed to load during the current epoch
    files: tuple | None = None  # folders: (n train, n val, hash of both lists), so --resume can tell a changed folder


def cifar_data(cfg: TrainConfig, info: ddp.DistInfo, device: torch.device) -> Data:
    train_split, val = cifar_splits(cfg)
    pin = device.type == "cuda"

    def batches(epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shard = (info.rank, info.world)
        for i, (imgs, labels) in enumerate(epoch_batches(train_split, cfg.batch_size, cfg.seed, epoch,
                                                         shard=shard, shift=cfg.shift, zoom=cfg.zoom,
                                                         contrast=cfg.contrast)):
            if i >= start:
                yield (imgs.pin_memory() if pin else imgs), labels

    desc = (f"CIFAR-10 training set with the validation split (final fit): {len(train_split)} images for training; "
            f"{len(val)} validation images scored only to monitor training" if cfg.final_fit else
            f"CIFAR-10 training set: {len(train_split)} images for training, {len(val)} held out for validation")
    return Data(len(train_split), len(val), len(train_split) // cfg.batch_size, val, val.images[:GRID_IMAGES],
                 desc, 32, batches, lambda: train_split.images)


def folder_data(cfg: TrainConfig, info: ddp.DistInfo, device: torch.device, log) -> Data:
    size = cfg.image_size or DEFAULT_IMAGE_SIZE
    split = ddp.run_on_main(info, lambda: split_folders(cfg.images, cfg.val_images, cfg.val_fraction,
                                                        cfg.max_images, cfg.workers, exclude=cfg.out))
    for s in split.scans:
        log(s.summary())
    train_ds = FolderDataset(split.train, size, train=True, seed=cfg.seed)
    val_ds = FolderDataset(split.val, size, train=False)
    local, pin = cfg.batch_size // info.world, device.type == "cuda"
    loader, sampler = train_loader(train_ds, local, info.rank, info.world, cfg.seed, cfg.workers, pin)
    steps = sampler.num_samples // local
    if steps == 0:
        raise AutocolorError(f"--batch-size {cfg.batch_size} is larger than the {len(train_ds)} training images")
    data = Data(len(train_ds), len(val_ds), steps, eval_loader(val_ds, 64, info.rank, info.world, cfg.workers, pin),
                 load_stack(val_ds, GRID_IMAGES) if info.is_main else torch.empty(0), split.description, size,
                 lambda e, s: iter(()), lambda: torch.empty(0))

    def batches(epoch: int, start: int) -> Iterator[tuple[torch.Tensor, None]]:
        train_ds.epoch = epoch  # crops depend on (seed, epoch, index); workers get a fresh copy each epoch
        sampler.set_epoch(epoch)
        sampler.start = start * local
        try:
            for imgs, failed in loader:
                data.failures += [train_ds.files[i] for i in failed.tolist() if i >= 0]
                yield imgs, None
        finally:
            sampler.start = 0

    def prior() -> torch.Tensor:
        n = min(len(split.train), max(GRID_IMAGES, PRIOR_PIXELS // (size * size)))
        ds = FolderDataset(split.train[:n], size, train=False)
        return torch.cat([imgs for imgs, _ in eval_loader(ds, 64, workers=cfg.workers)])

    data.batches, data.prior = batches, prior
    data.files = fingerprint(split, bool(cfg.val_images))
    return data


def fingerprint(split, separate_val: bool) -> tuple[int, int, str]:
    """(n train, n val, hash of the file lists), paths relative to their folder's root: the same on every rank
    (they share rank 0's split) and whatever the working directory or a moved-and-linked folder."""
    roots = (split.scans[0].root, split.scans[-1].root if separate_val else split.scans[0].root)
    text = "\0".join("\n".join(os.path.relpath(f, root) for f in files)
                     for files, root in zip((split.train, split.val), roots, strict=True))
    return len(split.train), len(split.val), hashlib.sha256(text.encode()).hexdigest()
