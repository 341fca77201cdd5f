"""Draw a model's architecture from the module itself: one box per layer, in call order, with shapes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from autocolor.plots import save_figure

COLOURS = {"Conv2d": "#8ecae6", "ConvTranspose2d": "#ffb703", "BatchNorm2d": "#d9d9d9", "ReLU": "#b7e4c7",
           "MaxPool2d": "#f4a261", "Upsample": "#e9c46a", "Sigmoid": "#cdb4db", "Tanh": "#cdb4db"}


def trace_layers(model: nn.Module, size: int = 32) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, description, output shape) for each leaf module, in the order a forward pass calls them."""
    calls: list[tuple[str, str, tuple[int, ...]]] = []
    hooks = []
    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            def hook(m, inp, out, name=name):
                calls.append((name, _describe(m), tuple(out.shape[1:])))
            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return calls


def _describe(m: nn.Module) -> str:
    kind = type(m).__name__
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        return f"{kind} {m.in_channels}->{m.out_channels}, {m.kernel_size[0]}x{m.kernel_size[1]}"
    if isinstance(m, nn.MaxPool2d):
        return f"{kind} {m.kernel_size}"
    if isinstance(m, nn.Upsample):
        return f"{kind} x{int(m.scale_factor)}"
    return kind


def draw(model: nn.Module, path: str | Path, title: str = "") -> Path:
    """Render the traced layer stack as a PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = trace_layers(model)
    height = 0.32 * (len(layers) + 2)
    fig, ax = plt.subplots(figsize=(5.2, height), dpi=100)
    ax.set_xlim(0, 10)
    ax.set_ylim(-len(layers) - 1, 1)
    ax.axis("off")
    ax.text(5, 0.3, title or getattr(model, "arch_name", type(model).__name__), ha="center", fontsize=10,
            weight="bold")
    for i, (_, desc, shape) in enumerate(layers):
        y = -i - 1
        kind = desc.split()[0]
        ax.add_patch(plt.Rectangle((0.2, y - 0.4), 6.3, 0.8, color=COLOURS.get(kind, "#eeeeee")))
        ax.text(0.35, y, desc, va="center", fontsize=7, family="monospace")
        ax.text(6.7, y, "x".join(map(str, shape)), va="center", fontsize=7, family="monospace")
    return save_figure(fig, path)
