"""ONNX export of a model's chroma path and an ONNX Runtime wrapper with the torch call contract.

What is exported: the network from the model input ``L`` (N, 1, H, W), CIE L*/100) to

* ``ab``  - a*, b* in Lab units (N, 2, H, W): ``model.chroma(L, model(L))`` traced whole, for every model that
  does not predict RGB (``seed-lab``: raw * AB_SCALE; ``unet-vivid``: the annealed mean over colour bins at the
  model's own temperature, which is then fixed in the graph);
* ``rgb`` - the raw sRGB prediction in [0, 1] (N, 3, H, W), for RGB models (``seed``): the sRGB -> Lab
  conversion is not in the graph; :class:`OnnxChroma` applies it (``colour.rgb_to_lab``) after the session.

Batch, height and width are dynamic axes (the seed models need H and W divisible by 8). The graph's
metadata records ``output`` (``ab``/``rgb``), the architecture and its config. The TorchScript-based exporter
(``dynamo=False``) is used: it works offline and needs only ``onnx``; the dynamo exporter needs ``onnxscript``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from autocolor.colour import rgb_to_lab
from autocolor.errors import AutocolorError
from autocolor.files import atomic_write_bytes

if TYPE_CHECKING:
    from autocolor.colorize import Colorizer

OPSET = 17
INPUT = "L"


class _ChromaGraph(nn.Module):
    """What goes into the ONNX graph: ``L -> a*b*`` (Lab units) or ``L -> raw RGB`` for RGB models."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.kind = "rgb" if getattr(model, "output", "ab") == "rgb" else "ab"

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        raw = self.model(L)
        return raw if self.kind == "rgb" else self.model.chroma(L, raw)


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise AutocolorError("ONNX support needs the onnx extra: pip install 'autocolor[onnx]'") from None
    return onnx, onnxruntime


def export_onnx(model: nn.Module, path: str | os.PathLike, size: int = 32, opset: int = OPSET,
                card: dict | None = None) -> Path:
    """Export ``model``'s chroma path to ``path`` (dynamic batch/height/width); traced at ``size``x``size``."""
    onnx, _ = _require_onnx()
    multiple = int(model.size_multiple)
    if size < multiple or size % multiple:
        raise AutocolorError(f"--size {size}: must be a positive multiple of {multiple}")
    newest = max_opset()
    if not OPSET <= opset <= newest:
        raise AutocolorError(f"opset {opset}: this torch exports opsets {OPSET} to {newest}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)  # traced and checked here, one per export; ``path`` is replaced only at the end
    try:
        return _export_into(model, path, tmp, size, opset, card, onnx)
    finally:
        tmp.unlink(missing_ok=True)  # after a failure (or a Ctrl-C) nothing is left beside ``path``


def _export_into(model: nn.Module, path: Path, tmp: Path, size: int, opset: int, card: dict | None, onnx) -> Path:
    multiple = int(model.size_multiple)  # (checked by export_onnx)
    graph = _ChromaGraph(copy.deepcopy(model)).to("cpu").float().eval()  # the caller's model is left as it was
    kind = graph.kind
    dummy = torch.rand(1, 1, size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        try:
            torch.onnx.export(graph, (dummy,), str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT],
                              output_names=[kind], dynamic_axes={INPUT: axes, kind: axes})
            proto = onnx.load(str(tmp))
            onnx.checker.check_model(proto)
        except Exception as exc:  # noqa: BLE001 - the exporter's messages carry whole graphs: one line of it
            lines = [x for x in str(exc).splitlines() if x.strip()]
            raise AutocolorError(f"ONNX export failed: {lines[-1] if lines else type(exc).__name__}") from None
    meta = {"output": kind, "architecture": getattr(model, "arch_name", type(model).__name__),
            "config": json.dumps(getattr(model, "arch_config", {})), "input": "L = CIE L*/100, (N, 1, H, W)",
            "produces": "a*b* in Lab units" if kind == "ab" else "raw sRGB in [0, 1]", "size_multiple": multiple}
    if card is not None:
        meta["card"] = json.dumps(card)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    atomic_write_bytes(path, proto.SerializeToString())  # with the usual permissions (mkstemp's ``tmp`` is 0600)
    return path


def max_opset() -> int:
    """The newest ONNX opset this torch's exporter writes (23 for torch 2.13)."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET
    except ImportError:  # a private module: fall back to the opset this package was checked with
        return OPSET
    return int(ONNX_MAX_OPSET)


class OnnxChroma:
    """ONNX Runtime session with the torch chroma contract: ``L`` (N, 1, H, W) -> a*b* (N, 2, H, W), Lab units.

    ``OnnxChroma(path)(L)`` equals ``model.chroma(L, model(L))`` of the exported model. Torch tensors in give
    float32 torch tensors out (on the input's device); numpy arrays in give numpy arrays out. With ``chroma``
    and ``eval`` it also stands in for the model inside ``colorize.Colorizer`` (see ``onnx_colorizer``).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        _, ort = _require_onnx()
        path = Path(path)
        if not path.is_file():
            raise AutocolorError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise AutocolorError(f"cannot load ONNX model {path}: {exc}") from None
        self.path = path
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.kind = self.session.get_outputs()[0].name
        if self.kind not in ("ab", "rgb"):
            raise AutocolorError(f"{path} is not an autocolor export (output {self.kind!r}, expected ab or rgb)")
        self.card = json.loads(self.meta["card"]) if "card" in self.meta else {}
        self.size_multiple = int(self.meta.get("size_multiple", 8))  # input sides must be multiples of this

    def run(self, L: np.ndarray) -> np.ndarray:
        """Raw graph output for a float32 (N, 1, H, W) array: a*b* (Lab units) or sRGB, as exported."""
        L = np.ascontiguousarray(L, dtype=np.float32)
        if L.ndim != 4 or L.shape[1] != 1:
            raise AutocolorError(f"expected L of shape (N, 1, H, W), got {tuple(L.shape)}")
        return self.session.run(None, {INPUT: L})[0]

    def __call__(self, L: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """a*b* in Lab units for the model input ``L`` (CIE L*/100)."""
        is_torch = isinstance(L, torch.Tensor)
        array = L.detach().float().cpu().numpy() if is_torch else L
        out = torch.from_numpy(self.run(array))
        if self.kind == "rgb":
            out = rgb_to_lab(out)[:, 1:].contiguous()
        if is_torch:
            return out.to(L.device)
        return out.numpy()

    def chroma(self, L: torch.Tensor, raw: torch.Tensor, **opts: float | None) -> torch.Tensor:
        """Drop-in for ``ColorNet.chroma``: ``raw`` from ``self(L)`` already is a*b*, so it is returned as is."""
        if opts:
            raise AutocolorError(f"the ONNX backend does not support {', '.join(sorted(opts))}")
        return raw

    def eval(self) -> OnnxChroma:
        """No-op, so code written for torch modules (``model.eval()``) works unchanged."""
        return self


def onnx_colorizer(path: str | os.PathLike, **settings: Any) -> Colorizer:
    """A ``colorize.Colorizer`` running the exported model with ONNX Runtime (CPU); settings as for Colorizer.

    Without ``size`` (or with None), the exported card's ``colorize_size`` is used, else ``DEFAULT_SIZE``.
    """
    from autocolor.colorize import DEFAULT_SIZE, Colorizer

    chroma = OnnxChroma(path)
    if settings.get("size") is None:
        settings["size"] = int(chroma.card.get("colorize_size") or DEFAULT_SIZE)
    return Colorizer(model=chroma, card=chroma.card, device=torch.device("cpu"), name=str(path), **settings)
