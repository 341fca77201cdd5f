"""Does an SSIM term in the objective lift the default model's SSIM? A fine-tuning probe on validation.

Usage: python benchmarks/ssim_objective.py [--weights 0 10 100] [--steps 600] [--lr 1e-4] [--model default]
                                           [--data DIR]
For each weight w, the model is fine-tuned from its trained weights for ``--steps`` batches of 128 training
images (flips and 3-pixel shifts, as training augments; cosine-decayed AdamW) on its own objective with the
model's ``ssim_weight`` option set to w (w x (1 - SSIM) of the rebuilt RGB image, Gaussian window 11, as
``evaluate`` measures), then scored on the validation split by ``evaluate`` with the card's test-time views.
w = 0 is the control: the same fine-tuning without the SSIM term. Every arm starts from the same weights and
sees the same batches.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from autocolor.colour import lab_and_input, to_float
from autocolor.data import epoch_batches, load_split
from autocolor.errors import AutocolorError, run_main
from autocolor.evaluate import evaluate
from autocolor.weights import load_model, save_model

BATCH = 128


def fine_tune(spec: str, ssim_weight: float, steps: int, lr: float, train, seed: int = 0) -> tuple[torch.nn.Module,
                                                                                                    dict]:
    """The model ``spec`` fine-tuned with its ``ssim_weight`` option set to ``ssim_weight``; returns (model, card)."""
    torch.manual_seed(seed)
    model, card = load_model(spec, overrides={"ssim_weight": ssim_weight})
    model = model.float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    batches = (b for epoch in range(10 ** 6) for b in epoch_batches(train, BATCH, seed, epoch, shift=3))
    for _ in tqdm(range(steps), desc=f"ssim weight {ssim_weight:g}", unit="batch", leave=False):
        imgs, labels = next(batches)
        rgb = to_float(imgs)
        lab, L = lab_and_input(rgb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            raw = model(L.contiguous(memory_format=torch.channels_last))
        loss = model.loss(raw, lab, rgb, labels=labels) if model.uses_labels else model.loss(raw, lab, rgb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 10.0, 100.0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    if args.steps < 1:
        raise AutocolorError("--steps must be at least 1")
    train = load_split("train", args.data)
    kw = {"split": "val", "data": args.data, "device": "cpu", "progress": False}
    base = evaluate(args.model, **kw)
    print(f"{args.model} fine-tuned {args.steps} batches of {BATCH} at lr {args.lr:g} (cosine), scored on "
          f"validation ({base['n_images']} images, {base['precision']})")
    print("| SSIM weight | val SSIM | val PSNR (dB) | seconds |")
    print("|---|---:|---:|---:|")
    print(f"| not fine-tuned | {base['ssim']:.5f} | {base['psnr']:.4f} | |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.weights:
            t = time.perf_counter()
            model, card = fine_tune(args.model, w, args.steps, args.lr, train)
            seconds = time.perf_counter() - t
            path = save_model(model, Path(tmp) / f"w{w:g}.safetensors", {"name": f"{card['name']}-ssim{w:g}"})
            res = evaluate(path, **kw)
            print(f"| {w:g} | {res['ssim']:.5f} | {res['psnr']:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    run_main(main)
