"""Training loop: resumable, atomic checkpoints, seeded data order, bf16 autocast, per-epoch validation."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shlex
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from autocolor import distributed as ddp
from autocolor.colour import grey_rgb, lab_and_input, to_float, to_uint8
from autocolor.data import Split, epoch_batches, load_split
from autocolor.errors import AutocolorError, first_line
from autocolor.files import atomic_write_bytes, why_unwritable
from autocolor.folders import FolderDataset, eval_loader, load_stack, split_folders, train_loader
from autocolor.inference import colorize_all
from autocolor.metrics import psnr, ssim
from autocolor.models import build, count_params, names, trainable
from autocolor.nets import ColorNet
from autocolor.plots import loss_curve, save_png, tiled_grid
from autocolor.runtime import autocast, machine_name, pick_precision, warmup_fraction
from autocolor.weights import CHECKPOINT, save_model

GRID_IMAGES = 16
DEFAULT_IMAGE_SIZE = 128  # crop side for image folders
PRIOR_PIXELS = 20_000_000  # pixels of training crops a model.prepare() colour prior is estimated from
CIFAR_CLASSES = 10


class TrainingInterrupted(AutocolorError):
    """Raised after a signal stopped training and a checkpoint was saved (exit code 130, as for Ctrl-C)."""

    exit_code = 130


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "step", "records", "seconds", "loss_sum",
                   "seen", "config")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint and model card)."""

    model: str = "seed-lab"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_images: int | None = None
    out: str = "runs/seed-lab"
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    data: str | None = None
    stop_after: int | None = None
    command: str = ""
    model_config: dict = field(default_factory=dict)
    images: str | None = None  # train on an image folder instead of CIFAR-10
    val_images: str | None = None
    val_fraction: float = 0.05
    image_size: int | None = None  # square crop side for folders (CIFAR-10 is always 32)
    workers: int = 4
    sync_bn: bool = False
    shift: int = 0  # CIFAR-10 augmentation: random translations of up to this many pixels
    zoom: float = 0.0  # CIFAR-10 augmentation: random zooms in by a factor of 1 to 1 + zoom
    contrast: float = 0.0  # CIFAR-10 augmentation: each image's contrast scaled by 1 - contrast to 1 + contrast
    final_fit: bool = False  # CIFAR-10: train on all 50,000 (the validation images included; monitoring only)
    overwrite: bool = False  # train over a run already in ``out`` (benchmark scripts that rerun into their folders)


def _interrupted(stop: _StopFlag, out: Path, where: str = "") -> TrainingInterrupted:
    """The error raised once a signal's checkpoint is saved (mid-epoch, or after an epoch's validation)."""
    return TrainingInterrupted(f"stopped by signal {stop.signum or 'on another rank'}; checkpoint saved in {out}"
                               f"{where}, continue with --resume")


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step boundary and stops."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _data(cfg: TrainConfig) -> tuple[Split, Split]:
    train, val = load_split("trainval" if cfg.final_fit else "train", cfg.data), load_split("val", cfg.data)
    if cfg.max_images:
        train = train.subset(slice(0, cfg.max_images))
        val = val.subset(slice(0, min(len(val), max(256, cfg.max_images // 5))))
    if len(train) < cfg.batch_size:
        raise AutocolorError(f"--batch-size {cfg.batch_size} is larger than the {len(train)} training images")
    return train, val


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path) -> dict:
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


def _setting(key: str, value):
    """A run setting as ``--resume`` compares it: image folders by their resolved path."""
    if key in ("images", "val_images") and value:
        return str(Path(value).expanduser().resolve())
    return value


def _data_failed(exc: BaseException, info: ddp.DistInfo, out: Path, epoch: int, step: int,
                 save: Callable[[], None]) -> AutocolorError:
    """One line for a batch that could not be read (the worker's own message, not its traceback). A single
    process saves a checkpoint first, so the steps of this epoch are kept; under DDP the other ranks cannot
    join that save, so the last epoch's checkpoint is what remains."""
    lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
    why = lines[-1].split(": ", 1)[-1] if lines and "Traceback" in str(exc) else (lines[0] if lines else repr(exc))
    if not info.enabled:
        try:
            save()
        except OSError as err:  # a full disk as well: both causes in the one line
            kept = ("the last epoch's checkpoint is kept" if (out / CHECKPOINT).is_file()
                    else "no checkpoint was saved yet")
            return AutocolorError(f"reading the training images failed at epoch {epoch + 1}, step {step}: {why}; "
                                  f"saving a checkpoint failed too ({first_line(err)}); {kept}")
        return AutocolorError(f"reading the training images failed at epoch {epoch + 1}, step {step}: {why}; "
                              f"checkpoint saved at step {step} in {out}: restore or fix the files, then continue "
                              "with --resume")
    kept = (f"the last epoch's checkpoint in {out} is kept: restore or fix the files, then continue with --resume"
            if (out / CHECKPOINT).is_file() else "no checkpoint was saved yet")
    return AutocolorError(f"reading the training images failed at epoch {epoch + 1}, step {step}: {why}; {kept}",
                          rank_local=True)


def _val_batches(val, info: ddp.DistInfo):
    """uint8 batches of this rank's share of ``val`` (a Split, or an already sharded folder loader)."""
    if isinstance(val, Split):
        images = val.images[info.rank::info.world]
        for start in range(0, len(images), 500):
            yield images[start:start + 500]
    else:
        for imgs, _ in val:
            yield imgs


@torch.no_grad()
def validate(model: ColorNet, val: Split | Iterable, device: torch.device, precision: str,
             info: ddp.DistInfo | None = None) -> dict:
    """Validation loss, PSNR and SSIM of the 8-bit output, and PSNR of the grey input, on the held-out split.

    ``val`` is a Split or a folder DataLoader yielding ``(uint8 batch, failed)``. Under DDP each rank scores
    every ``world``-th image and the sums are all-reduced, so all ranks get the numbers of the whole set.
    """
    info = info or ddp.DistInfo()
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # loss * n, PSNR sum, grey PSNR sum, SSIM sum, n
    for imgs in _val_batches(val, info):
        rgb = to_float(imgs.to(device, non_blocking=True))
        lab, L = lab_and_input(rgb)
        with autocast(device, precision):
            raw = model(L.contiguous(memory_format=torch.channels_last))
        pred, grey = to_uint8(model.to_rgb(L, raw)).cpu(), to_uint8(grey_rgb(L)).cpu()
        imgs = imgs.cpu()
        sums += torch.tensor([float(model.loss(raw, lab, rgb)) * len(imgs), float(psnr(pred, imgs).sum()),
                              float(psnr(grey, imgs).sum()), float(ssim(pred, imgs).sum()), len(imgs)],
                             dtype=torch.float64)
    model.train()
    if info.enabled:
        sums = ddp.all_reduce_sum(info, sums.to(device)).cpu()
    n = max(float(sums[4]), 1.0)
    return {"val_loss": float(sums[0]) / n, "val_psnr": float(sums[1]) / n, "val_psnr_grey": float(sums[2]) / n,
            "val_ssim": float(sums[3]) / n}


def _write_metrics(out: Path, records: list[dict]) -> None:
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _try(log, what: str, fn, *args) -> None:
    """Run one of the per-epoch writes; a failure (full disk, a file in the way) is a warning, not a lost run."""
    try:
        fn(*args)
    except OSError as exc:
        log(f"warning: could not write the {what}: {exc}")


def _epoch_pictures(out: Path, model, val, records: list[dict], epoch: int, device, precision) -> None:
    loss_curve(records, out / "loss_curve.png")
    images = val[:GRID_IMAGES] if torch.is_tensor(val) else val.images[:GRID_IMAGES]
    grey, pred = next(colorize_all(model, images, device, precision))[1:]
    save_png(tiled_grid([grey, pred, images]), out / "samples" / f"epoch_{epoch:03d}.png")


def _launch_prefix(info: ddp.DistInfo) -> str:
    """``torchrun ... -m `` for a run of several processes on one machine (the card's command must replay it)."""
    if not info.enabled:
        return ""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world))
    if local == info.world:
        return f"OMP_NUM_THREADS={torch.get_num_threads()} torchrun --standalone --nproc-per-node={local} -m "
    return f"torchrun --nnodes={info.world // local} --nproc-per-node={local} ... -m "


def _replay_command(command: str) -> str:
    """The command that reproduces the run from scratch: ``--resume`` and ``--stop-after N`` dropped."""
    words, out = shlex.split(command), []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w == "--stop-after":
            skip = True
        elif w != "--resume" and not w.startswith("--stop-after="):
            out.append(w)
    return shlex.join(out)


def train_step(net: torch.nn.Module, model: torch.nn.Module, opt: torch.optim.Optimizer, imgs: torch.Tensor,
               device: torch.device, precision: str, labels: torch.Tensor | None = None) -> torch.Tensor:
    """One optimisation step on a uint8 RGB batch: Lab target, autocast forward through ``net`` (``model`` or
    its DDP wrapper, channels_last), ``model.loss`` in fp32, AdamW. ``labels`` (class indices) reach the loss
    of a model whose ``uses_labels`` is true. Returns the loss (no host sync)."""
    rgb = to_float(imgs.to(device, non_blocking=True))
    lab, L = lab_and_input(rgb)
    with autocast(device, precision):
        raw = net(L.contiguous(memory_format=torch.channels_last))
    if model.uses_labels:
        if labels is None:
            raise AutocolorError("this model trains with class labels (CIFAR-10 only)")
        loss = model.loss(raw, lab, rgb, labels=labels.to(device, non_blocking=True))
    else:
        loss = model.loss(raw, lab, rgb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


@dataclass
class _Data:
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


def _cifar_data(cfg: TrainConfig, info: ddp.DistInfo, device: torch.device) -> _Data:
    train_split, val = _data(cfg)
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
    return _Data(len(train_split), len(val), len(train_split) // cfg.batch_size, val, val.images[:GRID_IMAGES],
                 desc, 32, batches, lambda: train_split.images)


def _folder_data(cfg: TrainConfig, info: ddp.DistInfo, device: torch.device, log) -> _Data:
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
    data = _Data(len(train_ds), len(val_ds), steps, eval_loader(val_ds, 64, info.rank, info.world, cfg.workers, pin),
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
    data.files = _fingerprint(split, bool(cfg.val_images))
    return data


def _fingerprint(split, separate_val: bool) -> tuple[int, int, str]:
    """(n train, n val, hash of the file lists), paths relative to their folder's root: the same on every rank
    (they share rank 0's split) and whatever the working directory or a moved-and-linked folder."""
    roots = (split.scans[0].root, split.scans[-1].root if separate_val else split.scans[0].root)
    text = "\0".join("\n".join(os.path.relpath(f, root) for f in files)
                     for files, root in zip((split.train, split.val), roots, strict=True))
    return len(split.train), len(split.val), hashlib.sha256(text.encode()).hexdigest()


def _checkpoint(info: ddp.DistInfo, path: Path, state: dict) -> None:
    """Rank 0 writes the checkpoint; every rank waits until it is on disk."""
    if info.is_main:
        _save_checkpoint(path, state)
    ddp.barrier(info)


def _rank_rng(ck: dict, info: ddp.DistInfo) -> torch.Tensor:
    ranks = ck.get("rng_ranks") or []
    return ranks[info.rank] if len(ranks) == info.world else ck["rng"]


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train ``cfg.model``; write checkpoints, logs, samples and finally ``model.safetensors`` + card.

    Under torchrun (RANK/WORLD_SIZE set) this process joins a DistributedDataParallel group:
    ``cfg.batch_size`` is the global batch, split evenly over the processes; rank 0 alone writes files and logs.
    """
    world = ddp.env_info().world
    if cfg.batch_size % world:  # checked before joining the group, so every rank fails at once
        raise AutocolorError(f"--batch-size {cfg.batch_size} is the global batch and must be divisible by the "
                             f"{world} processes")
    out = Path(cfg.out).expanduser()  # checked before any data is read, not at mkdir
    why = "is a file, not a folder" if out.is_file() else why_unwritable(out / CHECKPOINT)
    if why:
        raise AutocolorError(f"--out {cfg.out}: {why}; give a folder for the run")
    for flag, folder in (("--images", cfg.images), ("--val-images", cfg.val_images)):
        if folder and Path(cfg.out).expanduser().resolve() == Path(folder).expanduser().resolve():
            raise AutocolorError(f"--out {cfg.out} is the {flag} folder: the run's sample sheets would be read as "
                                 f"photos; give another --out (a folder inside the photos is left out of them)")
    info, device = ddp.setup(cfg.device)
    try:
        return _train(cfg, log if info.is_main else _quiet, info, device)
    finally:
        ddp.teardown()


def _train(cfg: TrainConfig, log, info: ddp.DistInfo, device: torch.device) -> Path:
    out = Path(cfg.out)
    if not (cfg.resume or cfg.overwrite) and ((out / CHECKPOINT).exists() or (out / "model.safetensors").exists()):
        raise AutocolorError(f"{out} already holds a training run; continue it with --resume, or train into "
                             "another --out (a new run would overwrite it)")
    created = info.is_main and not out.exists()
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    try:
        return _train_in(cfg, log, info, device, out)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise


def _resumable(cfg: TrainConfig, info: ddp.DistInfo, out: Path) -> dict:
    """The run's checkpoint (read by rank 0, sent to every rank), once its settings are checked against ``cfg``."""
    ck = ddp.run_on_main(info, lambda: _load_checkpoint(out / CHECKPOINT))
    # these fix the model, the LR schedule's length and the data order, so they must not change on resume
    fixed = ("model", "model_config", "epochs", "batch_size", "lr", "weight_decay", "max_images", "seed",
             "images", "val_images", "val_fraction", "image_size", "shift", "zoom", "contrast", "final_fit")
    was = {k: ck["config"].get(k, getattr(TrainConfig(), k)) for k in fixed}  # older checkpoints: defaults
    changed = [f"--{k.replace('_', '-')} {was[k]} (now {getattr(cfg, k)})" for k in fixed
               if _setting(k, was[k]) != _setting(k, getattr(cfg, k))]
    if changed:
        raise AutocolorError(f"--resume: {out} holds a run with {', '.join(changed)}; pass the same settings")
    return ck


def _train_in(cfg: TrainConfig, log, info: ddp.DistInfo, device: torch.device, out: Path) -> Path:
    precision = pick_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    if cfg.model in names() and not trainable(cfg.model):
        raise AutocolorError(f"{cfg.model} is assembled from trained runs (scripts/ensemble.py), not trained")
    try:
        model = build(cfg.model, **cfg.model_config)
    except (TypeError, ValueError) as exc:
        raise AutocolorError(f"--model-config does not fit {cfg.model}: {exc}") from None
    if model.uses_labels and (cfg.images or model.classify.out_features != CIFAR_CLASSES):
        raise AutocolorError(f"--model-config \"classes\" adds a head trained on CIFAR-10's labels: it works only "
                             f"on CIFAR-10 (not with --images) and with \"classes\": {CIFAR_CLASSES}")
    model = model.to(device).to(memory_format=torch.channels_last)
    if info.enabled:  # weights come from rank 0 (DDP broadcasts them); other randomness differs per rank
        torch.manual_seed(cfg.seed + 7919 * (info.rank + 1))
    size, multiple = (cfg.image_size or DEFAULT_IMAGE_SIZE) if cfg.images else 32, model.size_multiple
    if cfg.images:
        multiple = math.lcm(multiple, 8)  # folder crops are multiples of 8 too
    if size % multiple:  # checked before any data is read or scanned
        hint = "; choose another --image-size" if cfg.images else ""
        raise AutocolorError(f"{cfg.model} with this --model-config needs image sides that are multiples of "
                             f"{multiple}, and the training images are {size}x{size}{hint}")
    ck = _resumable(cfg, info, out) if cfg.resume else None  # settings compared before a long folder scan
    data = _folder_data(cfg, info, device, log) if cfg.images else _cifar_data(cfg, info, device)
    steps = data.steps
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                pct_start=warmup_fraction(cfg.epochs * steps, 0.2))
    epoch, step, records, elapsed, loss_sum, seen = 0, 0, [], 0.0, 0.0, 0
    wall = 0.0  # like ``elapsed`` but with validation, metrics and sample sheets: the run's whole time
    if ck is not None:
        then = ck.get("files")
        if then and data.files and tuple(then) != data.files:
            raise AutocolorError(f"--resume: the image folders changed since {out} started ({then[0]:,} training and "
                                 f"{then[1]:,} validation images then, {data.files[0]:,} and {data.files[1]:,} now, "
                                 "or other files); resuming needs the same files: restore them or start a new run")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(_rank_rng(ck, info))
        epoch, step, records, elapsed = ck["epoch"], ck["step"], ck["records"], ck["seconds"]
        loss_sum, seen, wall = ck["loss_sum"], ck["seen"], ck.get("wall", ck["seconds"])
        log(f"{out} finished all {cfg.epochs} epochs already: saving its model again" if epoch >= cfg.epochs
            else f"resuming {out} at epoch {epoch + 1}, step {step}")
        if info.is_main:  # the checkpoint's records are the truth (a kill may have come before metrics.jsonl)
            _try(log, "metrics.jsonl", _write_metrics, out, records)
    per = f" = {info.world} processes x {cfg.batch_size // info.world}" if info.enabled else ""
    log(f"training {cfg.model} ({count_params(model):,} params) on {data.n_train:,} images of "
        f"{data.image_size}x{data.image_size}, validating on {data.n_val:,}; device {device}, precision "
        f"{precision}, global batch {cfg.batch_size}{per}")

    def state() -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": torch.get_rng_state(), "rng_ranks": ddp.all_gather(info, torch.get_rng_state()),
                "epoch": epoch, "step": step, "records": records,
                "seconds": elapsed, "wall": wall, "loss_sum": loss_sum, "seen": seen, "config": asdict(cfg),
                "files": list(data.files) if data.files else None}

    if hasattr(model, "prepare") and not cfg.resume and info.is_main:
        model.prepare(data.prior())  # e.g. the vivid model's colour prior, from training images only
    ddp.broadcast_buffers(info, model)
    if cfg.sync_bn and not info.enabled:
        log("note: --sync-bn applies under torchrun with several processes; one process has nothing to sync")
    net = ddp.wrap(info, model, device, cfg.sync_bn)  # forward through DDP; state_dict from ``model``
    model.train()
    stopping = False
    run_epochs = 0
    with _StopFlag() as stop:
        while epoch < cfg.epochs:
            t0, first_step = time.perf_counter(), step
            bar = tqdm(total=steps, initial=step, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       mininterval=1.0, dynamic_ncols=True, disable=not info.is_main)
            acc = torch.zeros((), device=device)
            n_acc = 0
            batches = data.batches(epoch, step)
            while True:
                try:
                    imgs, labels = next(batches)
                except StopIteration:
                    break
                except (AutocolorError, OSError, RuntimeError) as exc:  # e.g. a folder changed under a worker
                    spent = time.perf_counter() - t0
                    elapsed, wall = elapsed + spent, wall + spent
                    if not info.enabled:  # fold in the losses since the last sum, as a checkpoint expects
                        loss_sum, seen = loss_sum + float(acc), seen + n_acc
                    bar.close()
                    raise _data_failed(exc, info, out, epoch, step,
                                       lambda: _checkpoint(info, out / CHECKPOINT, state())) from None
                loss = train_step(net, model, opt, imgs, device, precision, labels)
                sched.step()
                acc += loss.detach() * len(imgs)
                n_acc += len(imgs)
                step += 1
                bar.update(1)
                if step % 20 == 0 or step == steps or (stop.signum and not info.enabled):
                    # under DDP all ranks meet here: sum the loss over ranks and agree on stopping
                    stats = ddp.all_reduce_sum(info, torch.stack([acc.float(), acc.new_tensor(float(n_acc)),
                                                                  acc.new_tensor(float(bool(stop.signum)))]))
                    loss_sum, seen, stopping = loss_sum + float(stats[0]), seen + int(stats[1]), bool(stats[2] > 0)
                    acc.zero_()
                    n_acc = 0
                    if not math.isfinite(loss_sum):
                        bar.close()
                        kept = ("the last checkpoint is kept" if (out / CHECKPOINT).is_file()
                                else "no checkpoint was saved")
                        raise AutocolorError(f"loss became NaN/inf at epoch {epoch + 1}, step {step}; "
                                             f"try a lower --lr (now {cfg.lr}); {kept}")
                    rate = (step - first_step) / max(time.perf_counter() - t0, 1e-9)  # tqdm's own is None at first
                    bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", img_s=f"{rate * cfg.batch_size:.0f}")
                if stopping:
                    spent = time.perf_counter() - t0
                    elapsed, wall = elapsed + spent, wall + spent
                    bar.close()
                    _checkpoint(info, out / CHECKPOINT, state())
                    raise _interrupted(stop, out)
            bar.close()
            epoch_s = time.perf_counter() - t0  # training steps only; validation is not in images_per_s
            elapsed += epoch_s
            ddp.broadcast_buffers(info, model)  # BatchNorm running stats are per rank: keep rank 0's everywhere
            failed = [f for part in ddp.all_gather(info, data.failures) for f in part]
            data.failures.clear()
            if failed:
                log(f"{len(failed)} image load(s) failed this epoch and were replaced by other images: "
                    f"{', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}")
            rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                   **validate(model, data.val, device, precision, info),
                   "lr": sched.get_last_lr()[0], "seconds": round(elapsed, 2),
                   "images_per_s": round((steps - first_step) * cfg.batch_size / epoch_s, 1)}
            records.append(rec)
            epoch, step, loss_sum, seen = epoch + 1, 0, 0.0, 0
            if info.is_main:
                _try(log, "metrics.jsonl", _write_metrics, out, records)
            wall += time.perf_counter() - t0  # the checkpoint's own write is the only part left out
            _checkpoint(info, out / CHECKPOINT, state())  # before the pictures: nothing after it can lose the epoch
            t_out = time.perf_counter()
            if info.is_main:
                _try(log, "loss curve / sample sheet", _epoch_pictures, out, model, data.grid, records, epoch, device,
                     precision)
            wall += time.perf_counter() - t_out  # in the next checkpoint and in the card
            log(f"epoch {epoch}/{cfg.epochs}: train loss {rec['train_loss']:.4f}, val loss {rec['val_loss']:.4f}, "
                f"val PSNR {rec['val_psnr']:.2f} dB (grey {rec['val_psnr_grey']:.2f}), SSIM {rec['val_ssim']:.4f}, "
                f"{rec['images_per_s']} img/s")
            # a signal that came during validation or saving: stop here (all ranks agree), the epoch is saved
            asked = ddp.all_reduce_sum(info, torch.tensor(float(bool(stop.signum)), device=device))
            if asked > 0 and epoch < cfg.epochs:
                raise _interrupted(stop, out, f" after epoch {epoch}")
            if asked > 0:
                log("signal received after the last epoch: finishing (saving the model)")
            run_epochs += 1
            if cfg.stop_after and run_epochs >= cfg.stop_after and epoch < cfg.epochs:
                log(f"stopping after {run_epochs} epoch(s) as asked; continue with --resume")
                return out
    card = {"name": cfg.model, "metrics": {"validation": records[-1]},
            "training": {"command": _launch_prefix(info) + _replay_command(cfg.command),
                         "data": data.description, "image_size": data.image_size, "epochs": cfg.epochs,
                         "batch_size": cfg.batch_size, "batch_size_is_global": True, "processes": info.world,
                         "sync_bn": cfg.sync_bn and info.enabled, "lr": cfg.lr,
                         "weight_decay": cfg.weight_decay, "shift": cfg.shift, "zoom": cfg.zoom,
                         "contrast": cfg.contrast, "final_fit": cfg.final_fit,
                         "precision": precision, "device": str(device), "seed": cfg.seed,
                         "seconds": round(elapsed, 1), "seconds_with_validation": round(wall, 1),
                         "machine": machine_name()}}
    card["image_size"] = data.image_size  # the crop size it was trained at (colorize/evaluate --images use it)
    if info.is_main:
        path = save_model(model, out / "model.safetensors", card)
        log(f"saved {path} ({elapsed:.0f} s of training)")
    ddp.dump_state(info, model)
    ddp.barrier(info)
    return out
