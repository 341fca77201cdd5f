"""ONNX export: torch vs ONNX Runtime parity of the chroma path, dynamic axes, metadata and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from autocolor.cli import main  # noqa: E402
from autocolor.colour import greyscale  # noqa: E402
from autocolor.errors import AutocolorError  # noqa: E402
from autocolor.export import OnnxChroma, export_onnx  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.weights import save_model  # noqa: E402

TOL = 1e-3  # a*, b* in Lab units (they span about +-110)


def _model(name: str, **config) -> torch.nn.Module:
    """A deterministic model with non-trivial BatchNorm statistics (as after training), in eval mode."""
    torch.manual_seed(0)
    model = build(name, **config)
    gen = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=gen) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
    return model.eval()


def _photo_like(n: int, size: int) -> torch.Tensor:
    """Model input of smooth, photo-like colour images: gradients, a disc and mild noise, through CIE L*."""
    gen = torch.Generator().manual_seed(size)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    imgs = []
    for i in range(n):
        phase = 2 * math.pi * i / n
        r = 0.5 + 0.4 * torch.sin(3 * xs + phase)
        g = 0.3 + 0.6 * ys
        b = ((xs - 0.5) ** 2 + (ys - 0.4) ** 2 < 0.08).float() * 0.7 + 0.1
        rgb = torch.stack([r, g, b]) + 0.03 * torch.randn(3, size, size, generator=gen)
        imgs.append(rgb.clamp(0, 1))
    return greyscale(torch.stack(imgs))


def _inputs(kind: str, size: int) -> torch.Tensor:
    if kind == "random":
        return torch.rand(4, 1, size, size, generator=torch.Generator().manual_seed(size))
    return _photo_like(3, size)


@pytest.fixture(scope="module")
def seed_lab_export(tmp_path_factory):
    model = _model("seed-lab")
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "seed-lab.onnx")
    return model, OnnxChroma(path)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("kind", ["random", "photo"])
def test_seed_lab_parity(seed_lab_export, kind, size):
    model, session = seed_lab_export
    L = _inputs(kind, size)
    with torch.no_grad():
        ref = model.chroma(L, model(L))
    out = session(L)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (len(L), 2, size, size)
    assert ref.abs().max() > 1.0  # the comparison is not between two near-zero outputs
    assert (out - ref).abs().max().item() < TOL


def test_dynamic_batch_and_numpy_in_numpy_out(seed_lab_export):
    model, session = seed_lab_export
    L = _photo_like(1, 48)  # traced at 1x1x32x32: batch 5 and 48x48 exercise the dynamic axes
    big = torch.cat([L] * 5)
    out = session(big.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (5, 2, 48, 48)
    with torch.no_grad():
        ref = model.chroma(big, model(big)).numpy()
    assert np.abs(out - ref).max() < TOL


def test_metadata_and_kind(seed_lab_export):
    _, session = seed_lab_export
    assert session.kind == "ab"
    assert session.meta["output"] == "ab" and session.meta["architecture"] == "seed-lab"


def test_rgb_model_exports_raw_rgb_and_wrapper_returns_chroma(tmp_path):
    model = _model("seed")
    session = OnnxChroma(export_onnx(model, tmp_path / "seed.onnx"))
    assert session.kind == "rgb"
    L = _photo_like(2, 32)
    raw = session.run(L.numpy())
    assert raw.shape == (2, 3, 32, 32) and raw.min() >= 0 and raw.max() <= 1
    with torch.no_grad():
        ref = model.chroma(L, model(L))
    assert (session(L) - ref).abs().max().item() < TOL


def test_bad_inputs_are_user_errors(tmp_path, seed_lab_export):
    _, session = seed_lab_export
    with pytest.raises(AutocolorError):
        session(torch.rand(1, 3, 32, 32))
    with pytest.raises(AutocolorError):
        export_onnx(_model("seed-lab"), tmp_path / "x.onnx", size=30)
    with pytest.raises(AutocolorError):
        OnnxChroma(tmp_path / "missing.onnx")


@pytest.mark.parametrize(("name", "config"), [("seed-lab", {}), ("unet-vivid", {"widths": (8, 16)})])
def test_cli_export(tmp_path, capsys, name, config):
    """The export reports what the graph outputs: a*b* for every model that does not predict RGB (bins too)."""
    model = _model(name, **config)
    weights = save_model(model, tmp_path / "model.safetensors", {"name": "t"})
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(weights), "--format", "onnx", "-o", str(out), "--size", "64"]) == 0
    assert "output ab (a*b* in Lab units)" in capsys.readouterr().out
    session = OnnxChroma(out)
    L = _photo_like(2, 32)
    with torch.no_grad():
        ref = model.chroma(L, model(L))
    assert (session(L) - ref).abs().max().item() < TOL
    assert main(["export", "--model", str(tmp_path / "nope.safetensors"), "-o", str(out)]) == 1


def test_onnx_colorizer_matches_torch_colorizer(tmp_path):
    from PIL import Image

    from autocolor.colorize import Colorizer
    from autocolor.export import onnx_colorizer

    model = _model("seed-lab")
    path = export_onnx(model, tmp_path / "m.onnx", card={"name": "test"})
    grey = (_photo_like(1, 96)[0, 0].numpy() * 255).astype(np.uint8)
    image = Image.fromarray(grey[:, :80], "L")  # 96 x 80, not square
    ours = np.asarray(onnx_colorizer(path, size=48).colorize(image)).astype(int)
    ref = np.asarray(Colorizer(model=model, size=48, precision="fp32").colorize(image)).astype(int)
    assert ours.shape == ref.shape == (96, 80, 3)
    assert np.abs(ours - ref).max() <= 1  # 8-bit rounding of outputs 1e-3 apart in Lab
    assert onnx_colorizer(path).card == {"name": "test"}
    with pytest.raises(AutocolorError, match="temperature"):
        onnx_colorizer(path).colorize(image, temperature=0.5)


def test_cli_colorize_with_onnx_backend(tmp_path, capsys):
    from PIL import Image

    model = _model("seed-lab")
    weights = save_model(model, tmp_path / "model.safetensors", {"name": "t"})
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(weights), "-o", str(onnx_path)]) == 0
    src = tmp_path / "in" / "photo.png"
    src.parent.mkdir()
    Image.fromarray((_photo_like(1, 64)[0, 0].numpy() * 255).astype(np.uint8), "L").save(src)
    for backend, spec in (("onnx", onnx_path), ("torch", weights)):
        args = ["colorize", str(src), "-o", str(tmp_path / backend), "--model", str(spec), "--size", "32"]
        assert main([*args, "--backend", backend]) == 0
    ours = np.asarray(Image.open(tmp_path / "onnx" / "photo.png")).astype(int)
    ref = np.asarray(Image.open(tmp_path / "torch" / "photo.png")).astype(int)
    assert ours.shape == ref.shape == (64, 64, 3) and np.abs(ours - ref).max() <= 1
    capsys.readouterr()
    bad = ["colorize", str(src), "-o", str(tmp_path / "x"), "--model", str(weights), "--backend", "onnx"]
    assert main(bad) == 1
    assert "FILE.onnx" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "config"), [("unet", {}), ("unet-vivid", {}),
                                              ("unet", {"flip_tta": True, "shift_tta": 2}),
                                              ("unet-vivid", {"flip_tta": True, "shift_tta": 2}),
                                              ("unet-vivid", {"regress": 1.0, "mix": 0.7, "flip_tta": True}),
                                              ("unet", {"stem": 2, "widths": (16, 32, 64)}),
                                              ("vivid-ensemble", {"vivid": [{"widths": [8, 16]},
                                                                            {"widths": [8, 16], "flip_tta": True}],
                                                                  "fidelity": [{"widths": [8, 16]}],
                                                                  "fidelity_weight": 0.4})])
def test_other_architectures_export_their_chroma(tmp_path, name, config):
    """Models that do not predict a*b* directly (e.g. colour-bin classifiers) export ``chroma(L, model(L))`` whole;
    test-time views (mirrored, translated) are part of the graph."""
    model = _model(name, **config)
    session = OnnxChroma(export_onnx(model, tmp_path / f"{name}.onnx"))
    assert session.kind == "ab" and session.size_multiple == model.size_multiple
    for size in (32, 64):
        L = _photo_like(2, size)
        with torch.no_grad():
            ref = model.chroma(L, model(L))
        out = session(L)
        assert out.shape == (2, 2, size, size)
        assert (out - ref).abs().max().item() < TOL


@pytest.mark.parametrize("settings", [{"temperature": 0.38}, {"temperature": 0.6, "calibrate": True, "boost": 0.02},
                                      {"temperature": 1.0, "calibrate": True, "boost": 0.02, "boost_centred": True},
                                      {"temperature": 1.0, "calibrate": True, "boost": 0.05, "boost_centred": True,
                                       "boost_max": 1.3}])
def test_vivid_decoding_is_in_the_graph(tmp_path, settings):
    torch.manual_seed(0)  # before building: the weights must not depend on which tests ran first
    model = build("unet-vivid", widths=(8, 16, 32), **settings).eval()
    model.class_weight.copy_(torch.rand(len(model.centres), generator=torch.Generator().manual_seed(2)) + 0.5)
    L = _photo_like(3, 32)
    with torch.no_grad():  # confident, varied logits so the decoding is not near-uniform: std 4, as the
        scale = 4.0 / model(L).std()  # bundled vivid model's logits have on CIFAR-10 images
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale)
    session = OnnxChroma(export_onnx(model, tmp_path / "vivid.onnx"))
    with torch.no_grad():
        ref = model.chroma(L, model(L))
    out = session(L)
    assert ref.abs().max() > 1.0
    if "boost_max" in settings:  # the cap binds here: the capped graph must not equal the uncapped decoding
        with torch.no_grad():
            assert not torch.allclose(model.chroma(L, model(L), boost_max=5.0), ref, atol=0.1)
    per_image = (out - ref).flatten(1).abs().max(1).values
    if not settings.get("boost"):
        assert per_image.max().item() < TOL
        return
    # the boost multiplies a*b* by up to 5, and float error with it: the tolerance is 5 x TOL. It picks each
    # image's scale on a grid of step 0.05 (argmin): a float near-tie may pick the neighbouring step in ONNX
    # Runtime, which changes that image's a*b* by at most 5% (scales are >= 1)
    assert (per_image < 5 * TOL).sum() >= 2
    off = per_image >= 5 * TOL
    if off.any():
        rel = (out[off] - ref[off]).abs() / ref[off].abs().clamp_min(1.0)
        assert rel.max().item() <= 0.05 + 1e-3


def test_failed_export_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    old = tmp_path / "m.onnx"
    old.write_bytes(b"the previous export")

    def broken(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::foo' is not supported\n  graph(%x ...)")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(AutocolorError, match="ONNX export failed"):
        export_onnx(_model("seed-lab"), old)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"] and old.read_bytes() == b"the previous export"
