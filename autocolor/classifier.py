"""A small CIFAR-10 classifier used as a measuring instrument: semantic accuracy of colorized images.

Train it with ``python -m autocolor.classifier --epochs 8 --out autocolor/bundled/instruments/classifier.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn
from tqdm import tqdm

from autocolor.colour import to_float
from autocolor.data import VAL_SIZE, epoch_batches, load_split, shift_images
from autocolor.errors import AutocolorError, first_line, positive_int, run_main
from autocolor.files import atomic_write_bytes, why_unwritable
from autocolor.runtime import autocast, machine_name, pick_device, pick_precision, warmup_fraction
from autocolor.weights import BUNDLED, write_card

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
PROG = "python -m autocolor.classifier"
WEIGHTS = BUNDLED / "instruments" / "classifier.safetensors"  # not a colorizer: kept out of bundled_names()


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class Classifier(nn.Module):
    """VGG-style CNN: three double-conv blocks, global average pooling, linear layer to 10 classes."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        chans = [3, *widths]
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.fc = nn.Linear(widths[-1], 10)
        self.widths = tuple(widths)

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10) for uint8 RGB images (N, 3, H, W), normalised with CIFAR-10's mean and std."""
        x = (to_float(images_u8) - MEAN.to(images_u8.device)) / STD.to(images_u8.device)
        return self.fc(self.features(x.contiguous(memory_format=torch.channels_last)).mean((2, 3)))


def random_crop(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-image random translation by up to ``pad`` pixels, mirrored at the borders (``data.shift_images``)."""
    dy = torch.randint(0, 2 * pad + 1, (len(images),), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (len(images),), generator=gen)
    return shift_images(images, pad - dy, pad - dx)


@torch.no_grad()
def accuracy(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on uint8 RGB images."""
    model.eval()
    correct = 0
    for s in range(0, len(images_u8), batch_size):
        correct += int((model(images_u8[s:s + batch_size]).argmax(1) == labels[s:s + batch_size]).sum())
    return correct / len(images_u8)


def load_classifier(path: Path = WEIGHTS) -> Classifier | None:
    """The bundled classifier, or None when its weights are absent."""
    if not Path(path).is_file():
        return None
    try:
        card = json.loads(Path(path).with_suffix(".json").read_text())
        model = Classifier(tuple(card["widths"]))
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - a wrong or damaged file is the user's, not a bug: one line
        raise AutocolorError(f"{path} is not a classifier from python -m autocolor.classifier "
                             f"({type(exc).__name__}: {first_line(exc)})") from None
    return model.eval()


def classifier_at(path: str | os.PathLike | None) -> Classifier | None:
    """The bundled classifier (``path`` None; None when absent), or the one at ``path`` (an error if missing)."""
    if path is None:
        return load_classifier()
    if not Path(path).is_file() or not Path(path).with_suffix(".json").is_file():
        raise AutocolorError(f"no classifier at {path} (a .safetensors with its .json card, from "
                             "python -m autocolor.classifier)")
    return load_classifier(Path(path))


SPLIT_DATA = {"trainval": "CIFAR-10 training set ({n:,} images)",
              "train": "CIFAR-10 training set less the {val:,} validation images ({n:,} images)"}


def data_text(split: str, images: int) -> str:
    """What the card says the classifier trained on: the split, with the number of images it really had."""
    return SPLIT_DATA[split].format(n=images, val=VAL_SIZE)


def check_out(out: Path, overwrite: bool = False) -> Path:
    """Refuse an ``--out`` that could not be written, before any training: a folder, a name without .safetensors,
    a parent that is a file or cannot be created, or an existing file without ``overwrite``."""
    out = Path(out)
    for path in (out, out.with_suffix(".json")):
        if path.is_dir():
            raise AutocolorError(f"--out {out}: {path} is a folder; give a .safetensors file name")
    if out.suffix != ".safetensors":
        raise AutocolorError(f"--out {out}: the weights are written as safetensors; give a .safetensors file name")
    why = why_unwritable(out)
    if why:
        raise AutocolorError(f"--out {out}: {why}")
    if (out.exists() or out.with_suffix(".json").exists()) and not overwrite:
        raise AutocolorError(f"--out {out}: it or its card already exists (use --overwrite to replace them"
                             + ("; it is the bundled classifier every semantic accuracy is measured with)"
                                if out.resolve() == WEIGHTS.resolve() else ")"))
    return out


def save_weights(model: nn.Module, out: Path) -> None:
    """Write ``model``'s weights to ``out`` atomically (``files.atomic_write_bytes``), so an interrupted save never
    leaves half a file or spoils an older one."""
    atomic_write_bytes(out, save({k: v.contiguous() for k, v in model.state_dict().items()}))


def train_classifier(epochs: int, out: Path, batch_size: int = 256, lr: float = 0.1, seed: int = 0,
                     data: str | None = None, device: str = "auto", precision: str = "auto",
                     split: str = "trainval", overwrite: bool = False) -> dict:
    """Train on ``split`` (``train`` keeps the validation images unseen); report test accuracy; save weights + card.

    The bundled instrument trains on ``trainval``. One trained on ``train`` scores validation images it has not
    seen, so model selection can use semantic accuracy (``evaluate(..., classifier=PATH)``)."""
    if split not in SPLIT_DATA:
        raise ValueError(f"split must be one of {sorted(SPLIT_DATA)}, got {split!r}")
    if epochs < 1:
        raise AutocolorError(f"--epochs {epochs}: train for at least 1 epoch")
    out = check_out(out, overwrite)  # before the (long) training, not after it
    dev = pick_device(device)
    prec = pick_precision(precision, dev)
    torch.manual_seed(seed)
    train, test = load_split(split, data), load_split("test", data)
    if len(train) < batch_size:
        raise AutocolorError(f"the {split} split has {len(train):,} images, fewer than one batch of {batch_size}: "
                             "give --data a folder with more images")
    if len(test) == 0:
        raise AutocolorError("the test batch holds no images to score the classifier on")
    model = Classifier().to(dev).to(memory_format=torch.channels_last)
    steps = len(train) // batch_size
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                pct_start=warmup_fraction(epochs * steps, 0.25))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for imgs, labels in tqdm(epoch_batches(train, batch_size, seed, epoch), total=steps,
                                 desc=f"classifier epoch {epoch + 1}/{epochs}", mininterval=2.0):
            imgs = random_crop(imgs, gen).to(dev)
            with autocast(dev, prec):
                loss = F.cross_entropy(model(imgs).float(), labels.to(dev), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - t0
    model = model.cpu()
    acc = accuracy(model, test.images, test.labels)
    save_weights(model, out)
    card = {"architecture": "classifier", "widths": list(model.widths), "test_accuracy": round(acc, 4),
            "training": {"command": shlex.join(["python", "-m", "autocolor.classifier", *sys.argv[1:]]),
                         "data": data_text(split, len(train)), "epochs": epochs,
                         "seconds": round(seconds, 1), "machine": machine_name(), "precision": prec}}
    write_card(out, card)
    return card


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__)
    ap.add_argument("--epochs", type=positive_int, default=15)
    ap.add_argument("--out", type=Path, default=Path("runs/classifier/classifier.safetensors"),
                    help="where the weights go (default: %(default)s; the bundled one is "
                         "autocolor/bundled/instruments/classifier.safetensors)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=sorted(SPLIT_DATA), default="trainval",
                    help="train: leave the validation images out, for a classifier that scores them fairly")
    args = ap.parse_args(argv)
    print(json.dumps(train_classifier(args.epochs, args.out, seed=args.seed, data=args.data, split=args.split,
                                      overwrite=args.overwrite), indent=2))


if __name__ == "__main__":
    run_main(main, PROG)
