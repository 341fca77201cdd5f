"""Name -> model constructor. Architectures register themselves; ``autocolor.models`` imports them all."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from autocolor.errors import AutocolorError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``build(name)`` call the decorated class or function."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def build(name: str, **config: Any) -> nn.Module:
    """Instantiate the registered architecture ``name`` (fresh, untrained weights)."""
    if name not in _REGISTRY:
        raise AutocolorError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    fn = _REGISTRY[name]
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(config) - set(params))
        if unknown:
            raise TypeError(f"{name} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(params)}")
    model = fn(**config)
    defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
    model.arch_name = name
    model.arch_config = {k: list(v) if isinstance(v, tuple) else v for k, v in {**defaults, **config}.items()}
    return model


def names() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def trainable(name: str) -> bool:
    """False for architectures that are assembled from trained runs (e.g. ``vivid-ensemble``), not trained."""
    return bool(getattr(_REGISTRY[name], "trainable", True))
