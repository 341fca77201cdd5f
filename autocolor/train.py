"""Training loop: resumable, atomic checkpoints, seeded data order, bf16 autocast, per-epoch validation."""

from __future__ import annotations

import io
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from autocolor.colour import lab_and_input, to_float
from autocolor.data import Split, epoch_batches, load_split
from autocolor.errors import AutocolorError
from autocolor.files import atomic_write_bytes
from autocolor.inference import colorize_all
from autocolor.metrics import psnr
from autocolor.models import build, count_params
from autocolor.plots import loss_curve, save_png, tiled_grid
from autocolor.runtime import autocast, machine_name, pick_device, pick_precision
from autocolor.weights import save_model

CHECKPOINT = "checkpoint.pt"
GRID_IMAGES = 16


class TrainingInterrupted(AutocolorError):
    """Raised after a signal stopped training and a checkpoint was saved."""


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
    extra: dict = field(default_factory=dict)


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
    train, val = load_split("train", cfg.data), load_split("val", cfg.data)
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a user-facing error
        raise AutocolorError(f"cannot read checkpoint {path}: {exc}") from None


@torch.no_grad()
def validate(model, val: Split, device: torch.device, precision: str) -> dict:
    """Validation loss, PSNR of the 8-bit output and of the grey input, on the held-out split."""
    model.eval()
    losses, p_pred, p_grey = [], [], []
    for start in range(0, len(val), 500):
        rgb = to_float(val.images[start:start + 500].to(device))
        lab, L = lab_and_input(rgb)
        with autocast(device, precision):
            raw = model(L.contiguous(memory_format=torch.channels_last))
        losses.append(float(model.loss(raw, lab, rgb)) * len(rgb))
    for start, grey, pred in colorize_all(model, val.images, device, precision):
        target = val.images[start:start + len(pred)]
        p_pred.append(psnr(pred, target))
        p_grey.append(psnr(grey, target))
    model.train()
    return {"val_loss": sum(losses) / len(val), "val_psnr": float(torch.cat(p_pred).mean()),
            "val_psnr_grey": float(torch.cat(p_grey).mean())}


def _epoch_outputs(out: Path, model, val: Split, records: list[dict], epoch: int, device, precision) -> None:
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    loss_curve(records, out / "loss_curve.png")
    images = val.images[:GRID_IMAGES]
    grey, pred = next(colorize_all(model, images, device, precision))[1:]
    save_png(tiled_grid([grey, pred, images]), out / "samples" / f"epoch_{epoch:03d}.png")


def train(cfg: TrainConfig, log=print) -> Path:
    """Train ``cfg.model``; write checkpoints, logs, samples and finally ``model.safetensors`` + card."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    model = build(cfg.model).to(device).to(memory_format=torch.channels_last)
    train_split, val = _data(cfg)
    steps = len(train_split) // cfg.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                pct_start=0.2)
    epoch, step, records, elapsed, loss_sum, seen = 0, 0, [], 0.0, 0.0, 0
    if cfg.resume:
        ck = _load_checkpoint(out / CHECKPOINT)
        if ck["config"]["model"] != cfg.model or ck["config"]["epochs"] != cfg.epochs:
            raise AutocolorError(f"--resume: {out} holds a run of {ck['config']['model']} for "
                                 f"{ck['config']['epochs']} epochs; pass the same --model and --epochs")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        epoch, step, records, elapsed = ck["epoch"], ck["step"], ck["records"], ck["seconds"]
        loss_sum, seen = ck["loss_sum"], ck["seen"]
        log(f"resuming {out} at epoch {epoch + 1}, step {step}")
    log(f"training {cfg.model} ({count_params(model):,} params) on {len(train_split):,} images, "
        f"validating on {len(val):,}; device {device}, precision {precision}, batch {cfg.batch_size}")

    def state() -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": torch.get_rng_state(), "epoch": epoch, "step": step, "records": records,
                "seconds": elapsed, "loss_sum": loss_sum, "seen": seen, "config": asdict(cfg)}

    model.train()
    run_epochs = 0
    with _StopFlag() as stop:
        while epoch < cfg.epochs:
            t0 = time.perf_counter()
            bar = tqdm(total=steps, initial=step, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       mininterval=1.0, dynamic_ncols=True)
            acc = torch.zeros((), device=device)
            n_acc = 0
            batches = epoch_batches(train_split, cfg.batch_size, cfg.seed, epoch)
            for i, (imgs, _) in enumerate(batches):
                if i < step:
                    continue
                rgb = to_float(imgs.to(device, non_blocking=True))
                lab, L = lab_and_input(rgb)
                with autocast(device, precision):
                    raw = model(L.contiguous(memory_format=torch.channels_last))
                loss = model.loss(raw, lab, rgb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                acc += loss.detach() * len(imgs)
                n_acc += len(imgs)
                step += 1
                bar.update(1)
                if step % 20 == 0 or step == steps or stop.signum:
                    loss_sum, seen = loss_sum + float(acc), seen + n_acc
                    acc.zero_()
                    n_acc = 0
                    if not math.isfinite(loss_sum):
                        bar.close()
                        raise AutocolorError(f"loss became NaN/inf at epoch {epoch + 1}, step {step}; "
                                             f"try a lower --lr (now {cfg.lr}); last good checkpoint kept")
                    rate = bar.format_dict.get("rate") or 0.0
                    bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", img_s=f"{rate * cfg.batch_size:.0f}")
                if stop.signum:
                    elapsed += time.perf_counter() - t0
                    bar.close()
                    _save_checkpoint(out / CHECKPOINT, state())
                    raise TrainingInterrupted(f"stopped by signal {stop.signum}; checkpoint saved in {out}, "
                                              f"continue with --resume")
            bar.close()
            elapsed += time.perf_counter() - t0
            rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), **validate(model, val, device, precision),
                   "lr": sched.get_last_lr()[0], "seconds": round(elapsed, 2),
                   "images_per_s": round(steps * cfg.batch_size / (time.perf_counter() - t0), 1)}
            records.append(rec)
            epoch, step, loss_sum, seen = epoch + 1, 0, 0.0, 0
            _epoch_outputs(out, model, val, records, epoch, device, precision)
            _save_checkpoint(out / CHECKPOINT, state())
            log(f"epoch {epoch}/{cfg.epochs}: train loss {rec['train_loss']:.4f}, val loss {rec['val_loss']:.4f}, "
                f"val PSNR {rec['val_psnr']:.2f} dB (grey {rec['val_psnr_grey']:.2f}), {rec['images_per_s']} img/s")
            run_epochs += 1
            if cfg.stop_after and run_epochs >= cfg.stop_after and epoch < cfg.epochs:
                log(f"stopping after {run_epochs} epoch(s) as asked; continue with --resume")
                return out
    card = {"name": cfg.model, "metrics": {"validation": records[-1]},
            "training": {"command": cfg.command, "data": f"CIFAR-10 training set: {len(train_split)} images "
                         f"for training, {len(val)} held out for validation", "epochs": cfg.epochs,
                         "batch_size": cfg.batch_size, "lr": cfg.lr, "precision": precision, "device": str(device),
                         "seed": cfg.seed, "seconds": round(elapsed, 1), "machine": machine_name()}}
    path = save_model(model, out / "model.safetensors", card)
    log(f"saved {path} ({elapsed:.0f} s of training)")
    return out
