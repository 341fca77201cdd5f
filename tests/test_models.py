"""The seed architectures layer by layer, the registry, and saving/loading weights."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autocolor import models, registry, weights
from autocolor.errors import AutocolorError

ENCODER = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
DECODER = [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.Upsample]


@pytest.mark.parametrize("name", ["seed", "seed-lab"])
def test_seed_layers_in_order(name):
    model = models.build(name)
    assert len(model.encoder) == 3 and len(model.decoder) == 3
    for blocks, kinds, widths, cin in ((model.encoder, ENCODER, [64, 128, 256], [1, 64, 128]),
                                       (model.decoder, DECODER, [256, 128, 64], [256, 256, 128])):
        for block, width, c in zip(blocks, widths, cin, strict=True):
            assert [type(m) for m in block] == kinds
            conv = block[0]
            assert conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
            assert (conv.in_channels, conv.out_channels) == (c, width)
            assert block[1].num_features == width
    assert all(b[3].kernel_size == 2 for b in model.encoder)
    assert all(b[3].scale_factor == 2 and b[3].mode == "nearest" for b in model.decoder)
    assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (3, 3)
    assert model.head.out_channels == (3 if name == "seed" else 2)
    assert isinstance(model.act, nn.Sigmoid if name == "seed" else nn.Tanh)
    leaves = [type(m) for m in model.modules() if not list(m.children())]
    assert leaves == ENCODER * 3 + DECODER * 3 + [nn.Conv2d, nn.Sigmoid if name == "seed" else nn.Tanh]


def test_parameter_counts():
    n = models.count_params(models.build("seed"))
    assert n == 1_332_099
    assert models.count_params(models.build("seed-lab")) == n - 9 * 64 - 1  # one output channel fewer


def test_output_shapes_and_ranges():
    torch.manual_seed(0)
    L = torch.rand(5, 1, 32, 32)
    rgb_model, lab_model = models.build("seed").eval(), models.build("seed-lab").eval()
    with torch.no_grad():
        rgb, ab = rgb_model(L), lab_model(L)
    assert rgb.shape == (5, 3, 32, 32) and 0 <= float(rgb.min()) and float(rgb.max()) <= 1
    assert ab.shape == (5, 2, 32, 32) and float(ab.abs().max()) <= 1
    assert rgb_model.output == "rgb" and lab_model.output == "ab"


def test_lab_model_keeps_input_lightness():
    from autocolor.colour import greyscale

    torch.manual_seed(0)
    model = models.build("seed-lab").eval()
    L = torch.rand(2, 1, 32, 32) * 0.8 + 0.1
    out = model.colorize(L)
    assert out.shape == (2, 3, 32, 32)
    assert (greyscale(out) - L).abs().max() < 0.02  # only gamut clipping moves L*
    grey = model.colorize(L, saturation=0.0)
    assert (grey.max(1).values - grey.min(1).values).max() < 1e-4


def test_loss_targets():
    from autocolor.colour import AB_SCALE, lab_and_input

    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lab, _ = lab_and_input(rgb)
    assert float(models.build("seed").loss(rgb, lab, rgb)) == 0.0
    assert float(models.build("seed-lab").loss(lab[:, 1:] / AB_SCALE, lab, rgb)) == 0.0
    assert float(models.build("seed-lab").loss(torch.zeros(2, 2, 32, 32), lab, rgb)) > 0.0


def test_registry():
    assert {"seed", "seed-lab"} <= set(models.names())
    model = models.build("seed", widths=(8, 16, 32))
    assert model.arch_name == "seed" and model.arch_config == {"widths": [8, 16, 32]}  # JSON-ready
    assert model.encoder[0][0].out_channels == 8
    with pytest.raises(AutocolorError, match=r"unknown model 'nope'; known: .*seed, seed-lab"):
        models.build("nope")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("seed")(lambda: nn.Identity())


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = models.build("seed-lab", widths=(8, 16, 32))
    path = weights.save_model(model, tmp_path / "model.safetensors", {"name": "tiny"})
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["architecture"] == "seed-lab" and card["name"] == "tiny" and card["output"] == "ab"
    assert card["parameters"] == models.count_params(model)
    loaded, card2 = weights.load_model(tmp_path)
    assert card2 == card and not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert weights.resolve(path) == path and weights.resolve(tmp_path) == path


def test_load_model_overrides_views(tmp_path):
    """``overrides`` change test-time views of stored weights (the card stays as stored); bad ones are user errors."""
    torch.manual_seed(0)
    run = tmp_path / "run"
    weights.save_model(models.build("unet", widths=(8, 16, 32)).eval(), run / "model.safetensors",
                       {"name": "u", "architecture": "unet", "config": {"widths": [8, 16, 32]}})
    plain, card = weights.load_model(run)
    viewed, card2 = weights.load_model(run, overrides={"flip_tta": True, "shift_tta": 2})
    assert (plain.flip_tta, plain.shift_tta, viewed.flip_tta, viewed.shift_tta) == (False, 0, True, 2)
    assert card2 == card and "flip_tta" not in card["config"]
    L = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert not torch.allclose(plain(L), viewed(L))
    with pytest.raises(AutocolorError, match="do not fit unet: shift_tta"):
        weights.load_model(run, overrides={"shift_tta": 9})


def test_weightless_folder_does_not_hide_bundled_model(tmp_path, monkeypatch):
    """An output folder named like a bundled model (``colorize -o vivid`` run before) is not taken for a run."""
    from autocolor.colorize import resolve_model

    monkeypatch.chdir(tmp_path)
    for name in ("vivid", "default"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "photo.png").write_bytes(b"")
        assert weights.resolve(name) == weights.BUNDLED / f"{name}.safetensors"
    assert resolve_model("default") == "default"
    with pytest.raises(AutocolorError, match="no .safetensors weights"):
        weights.resolve(tmp_path / "vivid")  # an explicit folder path is still a run folder
    (tmp_path / "seed-lab").mkdir()
    (tmp_path / "seed-lab" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(AutocolorError, match="training in seed-lab is unfinished"):
        weights.resolve("seed-lab")  # an unfinished run named like a bundled model is not silently replaced
    run = tmp_path / "seed"
    run.mkdir()
    path = weights.save_model(models.build("seed", widths=(8, 16, 32)), run / "model.safetensors", {})
    assert weights.resolve("seed").resolve() == path  # a folder with weights is a run folder, bundled or not


def test_colorize_keeps_train_mode():
    """``ColorNet.colorize`` runs in eval mode (BatchNorm statistics untouched) and restores the mode after."""
    torch.manual_seed(0)
    model = models.build("seed-lab")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    L = torch.rand(2, 1, 32, 32)
    out = model.colorize(L)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(out, model.eval().colorize(L)) and not model.training


def test_onnx_files_cards_and_bad_cards_get_their_own_messages(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    with pytest.raises(AutocolorError, match="is an ONNX graph: run it with `autocolor colorize --backend onnx"):
        weights.resolve(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(AutocolorError, match=r"is a model card: pass its weights, .*m\.safetensors"):
        weights.resolve(tmp_path / "m.json")
    for text in ("{}", "[1]", '{"architecture": "seed", "config": [1]}'):
        (tmp_path / "m.json").write_text(text)
        with pytest.raises(AutocolorError, match="is not a model card: it needs a JSON object"):
            weights.load_card(tmp_path / "m.safetensors")


def test_load_errors(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"pickle")
    with pytest.raises(AutocolorError, match="pickled weights are refused"):
        weights.resolve(tmp_path / "model.pt")
    with pytest.raises(AutocolorError, match="weights file not found"):
        weights.resolve(tmp_path / "missing.safetensors")
    with pytest.raises(AutocolorError, match="no trained model 'no-such-model'"):
        weights.resolve("no-such-model")
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(AutocolorError, match="no .safetensors weights"):
        weights.resolve(empty)
    weights.save_model(models.build("seed", widths=(8, 16, 32)), empty / "model.safetensors", {})
    (empty / "model.json").write_text(json.dumps({"architecture": "seed-lab", "config": {"widths": [8, 16, 32]}}))
    with pytest.raises(AutocolorError, match="do not fit architecture seed-lab"):
        weights.load_model(empty)
    (empty / "model.json").unlink()
    with pytest.raises(AutocolorError, match="model card .* is missing"):
        weights.load_model(empty)


def test_unet_space_to_depth_stem():
    """``stem=2``: the convolutions see 2x2 blocks of L* as 4 channels at half resolution; a*b* come back at full
    resolution with detail inside each block (not a nearest-neighbour upsampling), and sides must be multiples
    of stem x 2^(levels - 1)."""
    torch.manual_seed(0)
    model = models.build("unet", widths=(8, 16, 32), stem=2).eval()
    seen = []
    model.down[0].register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    L = torch.rand(2, 1, 24, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ab = model(L)
    assert seen == [(2, 4, 12, 20)] and ab.shape == (2, 2, 24, 40)
    blocks = ab.unfold(2, 2, 2).unfold(3, 2, 2)  # (N, 2, 12, 20, 2, 2)
    assert blocks.flatten(-2).std(-1).mean() > 1e-3
    assert model.size_multiple == 8 and models.build("unet", stem=2).size_multiple == 16
    assert models.build("unet").size_multiple == 8
    with pytest.raises(ValueError, match="stem"):
        models.build("unet", stem=3)


def test_unet_auxiliary_class_loss():
    """``classes``: a training forward predicts the class from the pooled bottleneck; the loss with labels is the
    colour loss plus ``class_weight`` x cross-entropy, gradients reach the class head, and inference ignores it."""
    torch.manual_seed(0)
    model = models.build("unet", widths=(8, 16, 32), classes=10, class_weight=0.5).train()
    plain = models.build("unet", widths=(8, 16, 32)).train()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("classify.")})
    assert model.uses_labels and not plain.uses_labels
    rgb = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    from autocolor.colour import lab_and_input
    lab, L = lab_and_input(rgb)
    labels = torch.tensor([0, 3, 9, 3])
    raw = model(L)
    logits = model.classify(model.down[-1](F.max_pool2d(model.down[1](F.max_pool2d(model.down[0](L), 2)), 2))
                            .mean((2, 3)))
    colour = plain.loss(plain(L), lab, rgb)
    loss = model.loss(raw, lab, rgb, labels=labels)
    assert torch.allclose(loss, colour + 0.5 * F.cross_entropy(logits, labels), atol=1e-5)
    loss.backward()
    assert model.classify.weight.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="training-mode forward"):
        model.loss(raw, lab, rgb, labels=labels)  # the logits were used up by the loss above
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("classify.")})
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model(L), plain(L)) and model._logits is None
    with pytest.raises(ValueError, match="classes"):
        models.build("unet", classes=-1)


def test_unet_ssim_weight_adds_the_evaluated_ssim_deficit():
    """``ssim_weight``: the loss grows by w x (1 - SSIM of the rebuilt image), SSIM as ``evaluate`` scores it."""
    from autocolor.colour import AB_SCALE, lab_and_input, lab_from, to_uint8
    from autocolor.metrics import ssim

    torch.manual_seed(0)
    rgb = F.avg_pool2d(torch.rand(4, 3, 64, 64), 2)  # smooth enough that SSIM is well away from 0 and 1
    lab, L = lab_and_input(rgb)
    plain = models.build("unet", widths=(8, 16)).eval()
    weighted = models.build("unet", widths=(8, 16), ssim_weight=7.0).eval()
    weighted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        raw = plain(L)
        extra = (weighted.loss(raw, lab, rgb) - plain.loss(raw, lab, rgb)).item()
    scored = ssim(to_uint8(lab_from(L, raw * AB_SCALE)), to_uint8(rgb)).mean().item()
    assert 0.05 < 1 - scored < 0.95
    assert extra == pytest.approx(7.0 * (1 - scored), abs=7.0 * 1e-3)  # evaluate rounds to 8 bits first
    assert weighted.arch_config["ssim_weight"] == 7.0
    with pytest.raises(ValueError, match="ssim_weight"):
        models.build("unet", ssim_weight=-1.0)
    with pytest.raises(ValueError, match="objective 'psnr'"):
        models.build("unet", objective="mse", ssim_weight=1.0)


def test_training_ssim_map_matches_the_library_map_it_replaces():
    """``ssim_map_float`` (separable window, used by ``ssim_weight``) equals kornia's SSIM map, gradients too."""
    from kornia.metrics import ssim as kornia_ssim

    from autocolor.metrics import ssim_map_float

    torch.manual_seed(0)
    x = torch.rand(3, 3, 24, 28, requires_grad=True)
    y = F.avg_pool2d(torch.rand(3, 3, 48, 56), 2)
    ours, ref = ssim_map_float(x, y), kornia_ssim(x, y, 11, max_val=1.0, padding="valid")
    assert ours.shape == ref.shape == (3, 3, 14, 18)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    g_ours, = torch.autograd.grad(ours.mean(), x)
    g_ref, = torch.autograd.grad(ref.mean(), x)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-7, rtol=1e-4)


def test_weights_into_a_folder_is_refused_and_leaves_no_temp_file(tmp_path):
    model = models.build("seed", widths=(8, 16, 32))
    (tmp_path / "w.safetensors").mkdir()
    with pytest.raises(AutocolorError, match="is a folder; give a .safetensors file name"):
        weights.save_model(model, tmp_path / "w.safetensors", {})
    path = weights.save_model(model, tmp_path / "ok.safetensors", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.json", "ok.safetensors", "w.safetensors"]
    assert (path.stat().st_mode & 0o777) == 0o644
