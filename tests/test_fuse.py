"""BatchNorm folded into the convolutions for inference: same outputs, original untouched, used by default."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autocolor import evaluate as evaluate_mod
from autocolor import registry, weights
from autocolor.colorize import Colorizer
from autocolor.errors import AutocolorError
from autocolor.fuse import fuse_for_inference, is_fused
from autocolor.models import names

TOL = 1e-4  # a*, b* in Lab units (they span about +-110)
SMALL = {"widths": (8, 16, 32)}
ENSEMBLE = {"vivid": [{}, {"flip_tta": True}], "fidelity": [{}], "fidelity_weight": 0.4}  # it has no empty config
CASES = [(name, ENSEMBLE if name == "vivid-ensemble" else {}) for name in names()] + [
    ("unet", {"flip_tta": True, "context": True, "shift_tta": 2}), ("unet", {"stem": 2, "flip_tta": True})]


def _trained_like(name: str, **config) -> nn.Module:
    """``name`` built deterministically, with BN running stats and affine parameters away from their defaults."""
    torch.manual_seed(0)
    model = registry.build(name, **config)
    gen = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running stats from train-mode forwards (shifted, scaled input)
            model(torch.rand(4, 1, 32, 32, generator=gen) * 0.8 + 0.1)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(mod.num_features, generator=gen) - 0.5)
    return model.eval()


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize(("name", "config"), CASES, ids=[f"{n}{'-' + '-'.join(c) if c else ''}" for n, c in CASES])
def test_fused_matches_unfused(name: str, config: dict) -> None:
    model = _trained_like(name, **config)
    fused = fuse_for_inference(model)
    L = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model.chroma(L, model(L))
        out = fused.chroma(L, fused(L))
    assert ref.abs().max() > 1.0  # not two near-zero outputs
    assert (out - ref).abs().max().item() < TOL
    assert not _batchnorms(fused) and not fused.training and is_fused(fused) and not is_fused(model)
    with torch.no_grad():  # the model's own methods still work on the copy
        assert torch.allclose(fused.to_rgb(L, fused(L)), model.to_rgb(L, model(L)), atol=1e-4)


@pytest.mark.parametrize("name", ["seed", "unet"])
def test_original_untouched_and_no_batchnorm_left(name: str) -> None:
    model = _trained_like(name).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert model.training  # the original keeps its mode
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert _batchnorms(model) and not _batchnorms(fused)
    n_bn = len(_batchnorms(model))
    assert sum(isinstance(m, nn.Identity) for m in fused.modules()) == n_bn
    assert fused.arch_name == name and fused.arch_config == model.arch_config
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(), fused.parameters(), strict=False))


def test_pooling_moves_before_relu_exactly() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3), nn.ReLU(), nn.MaxPool2d(2, return_indices=True))
    fused = fuse_for_inference(seq)
    assert [type(m) for m in fused] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(fused[:3](x), seq[:3](x))  # max and ReLU commute: bit for bit
    seed = fuse_for_inference(registry.build("seed", **SMALL))
    assert [type(m) for m in seed.encoder[0]] == [nn.Conv2d, nn.Identity, nn.MaxPool2d, nn.ReLU]


def test_fused_model_cannot_be_saved(tmp_path) -> None:
    fused = fuse_for_inference(registry.build("seed-lab", **SMALL))
    with pytest.raises(AutocolorError, match="folded"):
        weights.save_model(fused, tmp_path / "m.safetensors", {})


@pytest.fixture
def run_dir(tmp_path):
    weights.save_model(_trained_like("seed-lab", **SMALL), tmp_path / "model.safetensors", {"name": "tiny"})
    return tmp_path


def test_load_model_fuses_only_when_asked(run_dir) -> None:
    plain, _ = weights.load_model(run_dir)
    fused, _ = weights.load_model(run_dir, fuse=True)
    assert _batchnorms(plain) and not is_fused(plain)
    assert not _batchnorms(fused) and is_fused(fused)


def test_colorizer_uses_the_fused_model(run_dir) -> None:
    col = Colorizer.load(run_dir, device="cpu")
    assert is_fused(col.model) and not _batchnorms(col.model)
    model = _trained_like("seed-lab", **SMALL)
    direct = Colorizer(model=model)  # built by hand: folded too, the caller's model left as it was
    assert not _batchnorms(direct.model) and direct.model is not model and _batchnorms(model)


def test_evaluate_runs_the_fused_model(run_dir, fake_cifar, monkeypatch) -> None:
    seen: list[nn.Module] = []
    real = evaluate_mod.predict_all

    def spy(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "predict_all", spy)
    monkeypatch.setattr(evaluate_mod, "classifier_at", lambda path: None)
    res = evaluate_mod.evaluate(run_dir, max_images=8, data=str(fake_cifar), device="cpu", progress=False)
    assert res["n_images"] == 8 and seen
    assert all(is_fused(m) and not _batchnorms(m) for m in seen)
