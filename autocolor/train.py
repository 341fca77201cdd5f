"""Training loop: resumable, atomic checkpoints, seeded data order, bf16 autocast, per-epoch validation."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from autocolor import checkpoint
from autocolor import distributed as ddp
from autocolor.colour import lab_and_input, to_float
from autocolor.errors import AutocolorError, first_line
from autocolor.files import why_unwritable
from autocolor.models import build, count_params, names, trainable
from autocolor.runtime import autocast, machine_name, pick_precision, warmup_fraction
from autocolor.sources import DEFAULT_IMAGE_SIZE, cifar_data, folder_data
from autocolor.validation import epoch_pictures, validate
from autocolor.weights import CHECKPOINT, save_model

CIFAR_CLASSES = 10


class TrainingInterrupted(AutocolorError):
    """Raised after a signal stopped training and a checkpoint was saved (exit code 130, as for Ctrl-C)."""

    exit_code = 130


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


def _write_metrics(out: Path, records: list[dict]) -> None:
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _try(log, what: str, fn, *args) -> None:
    """Run one of the per-epoch writes; a failure (full disk, a file in the way) is a warning, not a lost run."""
    try:
        fn(*args)
    except OSError as exc:
        log(f"warning: could not write the {what}: {exc}")


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


def _checkpoint(info: ddp.DistInfo, path: Path, state: dict) -> None:
    """Rank 0 writes the checkpoint; every rank waits until it is on disk."""
    if info.is_main:
        checkpoint.save(path, state)
    ddp.barrier(info)


def _quiet(*args: object, **kwargs: object) -> None:
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
    out = Path(cfg.out).expanduser()  # checked before any data is read, not at mkdir; by rank 0, which writes it
    why = "is a file, not a folder" if out.is_file() else why_unwritable(out / CHECKPOINT)
    if why and ddp.env_info().is_main:
        raise AutocolorError(f"--out {cfg.out}: {why}; give a folder for the run")
    for flag, folder in (("--images", cfg.images), ("--val-images", cfg.val_images)):
        if folder and out.resolve() == Path(folder).expanduser().resolve():
            raise AutocolorError(f"--out {cfg.out} is the {flag} folder: the run's sample sheets would be read as "
                                 f"photos; give another --out (a folder inside the photos is left out of them)")
    info, device = ddp.setup(cfg.device)
    try:
        return _train(cfg, log if info.is_main else _quiet, info, device)
    finally:
        ddp.teardown()


def _train(cfg: TrainConfig, log, info: ddp.DistInfo, device: torch.device) -> Path:
    out = Path(cfg.out).expanduser()
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
    ck = ddp.run_on_main(info, lambda: checkpoint.load(out / CHECKPOINT))
    # these fix the model, the LR schedule's length and the data order, so they must not change on resume
    fixed = ("model", "model_config", "epochs", "batch_size", "lr", "weight_decay", "max_images", "seed",
             "images", "val_images", "val_fraction", "image_size", "shift", "zoom", "contrast", "final_fit")
    was = {k: ck["config"].get(k, getattr(TrainConfig(), k)) for k in fixed}  # older checkpoints: defaults
    changed = [f"--{k.replace('_', '-')} {was[k]} (now {getattr(cfg, k)})" for k in fixed
               if checkpoint.setting(k, was[k]) != checkpoint.setting(k, getattr(cfg, k))]
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
    if cfg.images and math.lcm(multiple, 8) != multiple:  # folder crops are multiples of 8 too
        multiple, why = math.lcm(multiple, 8), f" (the model's {multiple} and the folder crops' 8)"
    else:
        why = ""
    if size % multiple:  # checked before any data is read or scanned
        hint = "; choose another --image-size" if cfg.images else ""
        raise AutocolorError(f"{cfg.model} with this --model-config needs image sides that are multiples of "
                             f"{multiple}{why}, and the training images are {size}x{size}{hint}")
    ck = _resumable(cfg, info, out) if cfg.resume else None  # settings compared before a long folder scan
    data = folder_data(cfg, info, device, log) if cfg.images else cifar_data(cfg, info, device)
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
        torch.set_rng_state(checkpoint.rank_rng(ck, info))
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
                _try(log, "loss curve / sample sheet", epoch_pictures, out, model, data.grid, records, epoch, device,
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
