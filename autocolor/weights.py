"""Save and load trained models as ``safetensors`` + a JSON model card. No pickles are ever loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from autocolor.errors import AutocolorError, first_line
from autocolor.files import atomic_write_bytes
from autocolor.fuse import fuse_for_inference, is_fused
from autocolor.models import build, count_params

BUNDLED = Path(__file__).with_name("bundled")  # data folder of shipped weights + cards
CHECKPOINT = "checkpoint.pt"  # what ``autocolor train`` leaves in a run folder until the model is saved


HALF_STORAGE = "float16 convolution and linear weights, float32 for the rest"


def half_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every float weight of 2+ dimensions (convolutions, linear layers) as float16.

    Halves a U-Net's file; loading casts back to float32 (``load_state_dict`` copies into float32 parameters).
    BatchNorm statistics, biases and buffers stay float32, and so does any tensor float16 cannot hold."""
    def small(k: str, v: torch.Tensor) -> bool:
        return (k.endswith(".weight") and v.is_floating_point() and v.dim() >= 2
                and bool(v.abs().max() < torch.finfo(torch.float16).max))
    return {k: v.half() if small(k, v) else v for k, v in state.items()}


def _write_weights(state: dict[str, torch.Tensor], path: Path, architecture: str) -> None:
    if path.is_dir():
        raise AutocolorError(f"{path} is a folder; give a .safetensors file name")
    atomic_write_bytes(path, save(state, metadata={"architecture": architecture}))  # unique temp file, then rename
    os.chmod(path, 0o644)  # weights are for everyone to read


def save_model(model: nn.Module, path: Path, card: dict, half: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its card (same stem, .json). Returns the weights path.

    ``half=True`` stores the weights as ``half_state`` does (the card's ``storage`` says so)."""
    if is_fused(model):
        raise AutocolorError("cannot save a model with BatchNorm folded for inference; save the unfused model")
    path = Path(path)
    state = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    _write_weights(half_state(state) if half else state, path, model.arch_name)
    full = {"architecture": model.arch_name, "config": model.arch_config, "parameters": count_params(model),
            "output": getattr(model, "output", "ab"), **card}
    if half:
        full["storage"] = HALF_STORAGE
    write_card(path, full)
    return path


def halve(weights: Path) -> Path:
    """Rewrite a saved model's weights file as ``half_state`` stores it and note it in the card."""
    weights = resolve(weights)
    card = load_card(weights)
    _write_weights(half_state(load_file(str(weights))), weights, card["architecture"])
    card["storage"] = HALF_STORAGE
    write_card(weights, card)
    return weights


def write_card(weights: Path, card: dict) -> Path:
    """Write ``card`` as the JSON model card beside ``weights`` (same stem, .json), atomically; returns its path."""
    card_path = Path(weights).with_suffix(".json")
    atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return card_path


def bundled_names() -> list[str]:
    """Names of the models whose weights ship inside the package."""
    return sorted(p.stem for p in BUNDLED.glob("*.safetensors"))


def resolve(spec: str | os.PathLike) -> Path:
    """Find the weights file for a bundled name, a run folder or a .safetensors path.

    A folder counts as a run folder when it holds .safetensors weights; a weightless folder that has a bundled
    model's name (say ``-o vivid`` from an earlier colorize) does not hide that bundled model."""
    p = Path(spec).expanduser()
    bundled = BUNDLED / f"{spec}.safetensors"
    if p.is_dir():
        cands = sorted(p.glob("*.safetensors"))
        if cands:
            return p / "model.safetensors" if (p / "model.safetensors").exists() else cands[0]
        if (p / CHECKPOINT).is_file():  # checked first: a run folder named like a bundled model still counts
            raise AutocolorError(f"training in {p} is unfinished (a checkpoint, no model yet): finish it with "
                                 f"the same `autocolor train ... --out {p}` command plus --resume")
        if str(spec) in bundled_names():  # e.g. an output folder named `vivid` beside the user: not a run folder
            return bundled
        raise AutocolorError(f"no .safetensors weights in {p}")
    if p.suffix == ".safetensors" or p.exists():
        if not p.is_file():
            raise AutocolorError(f"weights file not found: {p}")
        if p.suffix == ".onnx":
            raise AutocolorError(f"{p} is an ONNX graph: run it with `autocolor colorize --backend onnx --model "
                                 f"{p}` (or autocolor.export.onnx_colorizer)")
        if p.suffix == ".json":
            raise AutocolorError(f"{p} is a model card: pass its weights, {p.with_suffix('.safetensors')}")
        if p.suffix != ".safetensors":
            raise AutocolorError(f"{p}: only .safetensors weights are loaded (pickled weights are refused)")
        return p
    if bundled.is_file():
        return bundled
    known = ", ".join(bundled_names()) or "none"
    raise AutocolorError(f"no trained model {str(spec)!r}: not a bundled name ({known}), run folder or "
                         f".safetensors file; train one with `autocolor train --model NAME`")


def load_card(weights: Path) -> dict:
    """The JSON model card beside a weights file."""
    card_path = Path(weights).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise AutocolorError(f"model card {card_path} is missing (it names the architecture)") from None
    except json.JSONDecodeError as exc:
        raise AutocolorError(f"model card {card_path} is not valid JSON: {exc}") from None
    if not isinstance(card, dict) or not isinstance(card.get("architecture"), str) \
            or not isinstance(card.get("config", {}), dict):
        raise AutocolorError(f"model card {card_path} is not a model card: it needs a JSON object with "
                             "\"architecture\" (a name) and optionally \"config\" (an object)")
    return card


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu",
               fuse: bool = False, overrides: dict | None = None) -> tuple[nn.Module, dict]:
    """Load a trained model (bundled name, run folder or .safetensors file) in eval mode, with its card.

    ``fuse=True`` (what the inference paths use) folds BatchNorm into the convolutions
    (``autocolor.fuse.fuse_for_inference``): same outputs, faster, but inference only. ``overrides`` replace
    architecture options that do not change the weights (e.g. test-time views); the card is returned as stored.
    """
    path = resolve(spec)
    card = load_card(path)
    try:
        model = build(card["architecture"], **{**card.get("config", {}), **(overrides or {})})
    except (TypeError, ValueError) as exc:
        options = f"options {overrides}" if overrides else f"the card's options {card.get('config', {})}"
        raise AutocolorError(f"{options} do not fit {card['architecture']}: {exc}") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise AutocolorError(f"cannot read weights {path}: {exc}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise AutocolorError(f"weights {path} do not fit architecture {card['architecture']}: "
                             f"{first_line(exc)}") from None
    model = model.to(device).eval()
    return (fuse_for_inference(model) if fuse else model), card
