"""The vivid model's bins, colour prior, calibrated decoding and per-image colour boost."""

from __future__ import annotations

import pytest
import torch
from conftest import load_script

from autocolor.colour import rgb_to_lab
from autocolor.unet import VividUNet, gamut_bins


def _model(**kw) -> VividUNet:
    torch.manual_seed(0)
    return VividUNet(widths=(8, 16), **kw).eval()


def test_gamut_bins_cover_real_colours_and_nothing_far_outside():
    centres = gamut_bins()
    assert 200 < len(centres) < 400
    rgb = torch.rand(1, 3, 64, 64)
    ab = rgb_to_lab(rgb)[0, 1:].flatten(1).T
    assert torch.cdist(ab, centres).min(1).values.max() < 10.0  # every real colour has a bin within one cell
    assert centres.abs().max() <= 110.0


def test_nearest_bin_matches_brute_force_for_real_colours():
    m = _model()
    ab = rgb_to_lab(torch.rand(2, 3, 5, 7))[:, 1:]  # every real colour's grid cell is a bin, so it is exact
    pts = ab.permute(0, 2, 3, 1)
    got = m.nearest_bin(ab)
    brute = torch.cdist(pts.reshape(-1, 2), m.centres).argmin(1).reshape(2, 5, 7)
    d_got, d_best = (m.centres[got] - pts).norm(dim=-1), (m.centres[brute] - pts).norm(dim=-1)
    assert torch.allclose(d_got, d_best, atol=1e-4)  # equidistant ties may pick either bin


def test_prepare_weights_rare_colours_more():
    m = _model()
    grey = torch.full((50, 3, 8, 8), 128, dtype=torch.uint8)
    red = grey.clone()
    red[:5, 0], red[:5, 1:] = 220, 30
    m.prepare(torch.cat([grey, red]))
    w = m.class_weight
    grey_bin = m.nearest_bin(torch.zeros(1, 2, 1, 1)).item()
    red_bin = m.nearest_bin(rgb_to_lab(red[:1, :, :1, :1].float() / 255)[:, 1:]).item()
    assert w[red_bin] > w[grey_bin]
    assert (w > 0).all()


def _logits_for(m: VividUNet, p: torch.Tensor) -> torch.Tensor:
    """Logits (1, Q, 1, 1) whose softmax is the distribution ``p`` (Q,)."""
    return p.clamp_min(1e-12).log()[None, :, None, None]


def test_calibrated_decoding_divides_out_the_class_weights():
    m = _model()
    q = len(m.centres)
    w = torch.rand(q) + 0.5
    m.class_weight.copy_(w)
    p = torch.softmax(torch.randn(q), 0)
    raw = _logits_for(m, p * w / (p * w).sum())  # what a rebalanced model learns
    L = torch.full((1, 1, 1, 1), 0.5)
    want = (p[:, None] * m.centres).sum(0)
    got = m.chroma(L, raw, temperature=1.0, calibrate=True)[0, :, 0, 0]
    assert torch.allclose(got, want, atol=1e-3)
    raw_mean = m.chroma(L, raw, temperature=1.0, calibrate=False)[0, :, 0, 0]
    assert not torch.allclose(raw_mean, want, atol=1e-1)


def test_boost_minimises_its_stated_cost():
    m = _model()
    q = len(m.centres)
    colour = (m.centres - torch.tensor([40.0, 30.0])).norm(dim=1).argmin()
    sure = torch.full((q,), 1e-9)
    sure[colour] = 1.0
    unsure = torch.ones(q)
    unsure[colour] = 30.0
    p = torch.stack([sure / sure.sum(), unsure / unsure.sum()])[:, :, None, None].expand(2, q, 4, 4)
    L = torch.full((2, 1, 8, 8), 0.6)
    ab = torch.einsum("nqhw,qc->nchw", p, m.centres)
    s = m.boost_factor(L, p, ab, strength=0.02).flatten()
    assert s[0] == 1.0, "a certain prediction gains nothing from a boost: every boost is pure error"
    assert s[1] > 1.0, "where the expected error is large already, extra colour costs little"
    raw = p.log()
    plain = m.chroma(L, raw, temperature=1.0, boost=0.0)
    boosted = m.chroma(L, raw, temperature=1.0, boost=0.02)
    assert torch.allclose(boosted, plain * s[:, None, None, None], atol=1e-3)
    assert torch.equal(m.boost_factor(L, p, ab, strength=0.0).flatten(), torch.ones(2))


def test_centred_boost_scales_colour_contrast_and_keeps_the_tint():
    centred, plain = _model(boost_centred=True), _model()
    centres, q = centred.centres, len(centred.centres)
    warm = (centres - torch.tensor([40.0, 30.0])).norm(dim=1).argmin()
    cool = (centres - torch.tensor([10.0, -30.0])).norm(dim=1).argmin()
    p = torch.full((2, q, 4, 4), 1.0)
    p[0, warm] = 1e9  # image 0: one sure colour everywhere, nothing to gain
    p[1, warm, :, :2], p[1, cool, :, 2:] = 30.0, 30.0  # image 1: two unsure halves, warm and cool
    p = p / p.sum(1, keepdim=True)
    L = torch.full((2, 1, 8, 8), 0.6)
    raw = p.log()
    ab = torch.einsum("nqhw,qc->nchw", p, centres)
    s = centred.boost_factor(L, p, ab, strength=0.02).flatten()
    assert s[0] == 1.0 and s[1] > 1.0
    grey = centred.chroma(L, raw, temperature=1.0, boost=0.0)
    mean = ab.mean((2, 3), keepdim=True)  # bilinear upsampling keeps a constant, so the formula holds after it
    boosted = centred.chroma(L, raw, temperature=1.0, boost=0.02)
    assert torch.allclose(boosted, mean + (grey - mean) * s[:, None, None, None], atol=1e-3)
    assert torch.allclose(boosted[1].mean((1, 2)), grey[1].mean((1, 2)), atol=0.5)  # the tint stays
    assert (boosted[1, :, :, 0] - boosted[1, :, :, -1]).norm() > (grey[1, :, :, 0] - grey[1, :, :, -1]).norm() + 1
    about_grey = plain.chroma(L, raw, temperature=1.0, boost=0.02)
    assert not torch.allclose(about_grey, boosted, atol=1e-1)


def test_card_settings_are_the_defaults_and_calls_override_them():
    m = _model(temperature=0.5, calibrate=True, boost=0.02)
    raw = torch.randn(2, len(m.centres), 4, 4)
    L = torch.rand(2, 1, 8, 8)
    same = m.chroma(L, raw, temperature=0.5, calibrate=True, boost=0.02)
    assert torch.equal(m.chroma(L, raw), same)
    assert not torch.allclose(m.chroma(L, raw, boost=0.0), same)



def test_regress_adds_a_direct_ab_output_that_mix_blends_into_the_decoded_mean():
    """``regress``: two more head channels (a*b* / AB_SCALE). ``mix`` 0 decodes exactly as the bins alone do, boost
    included (the boost's spread is the bins' own); ``mix`` 1 without boost is the direct a*b* upsampled."""
    import torch.nn.functional as F

    from autocolor.colour import AB_SCALE

    plain, reg = _model(boost_centred=True), _model(regress=1.0, boost_centred=True)
    q = len(reg.centres)
    assert reg.head.out_channels == q + 2 and plain.head.out_channels == q
    torch.manual_seed(1)
    raw = torch.cat([torch.randn(2, q, 4, 4) * 3, torch.randn(2, 2, 4, 4) * 0.3], 1)
    L = torch.rand(2, 1, 8, 8)
    for b in (0.0, 0.02):
        want = plain.chroma(L, raw[:, :q], temperature=1.0, boost=b)
        reg.mix = 0.0
        assert torch.allclose(reg.chroma(L, raw, temperature=1.0, boost=b), want, atol=1e-4)
    reg.mix = 1.0
    direct = F.interpolate(raw[:, q:] * AB_SCALE, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(reg.chroma(L, raw, boost=0.0), direct, atol=1e-4)
    reg.mix = 0.5
    half = 0.5 * (direct + plain.chroma(L, raw[:, :q], temperature=1.0, boost=0.0))
    assert torch.allclose(reg.chroma(L, raw, temperature=1.0, boost=0.0), half, atol=1e-4)
    for bad in ({"regress": -1.0}, {"mix": 1.5}):
        try:
            _model(**bad)
        except ValueError as exc:
            assert "regress" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_regress_loss_adds_the_weighted_psnr_objective_of_the_direct_ab():
    """The loss is the bins' cross-entropy plus ``regress`` x mean log10 RGB MSE of the direct a*b*; a perfect
    direct a*b* makes that term minimal, and the gradient reaches the direct channels."""
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 8, 8)
    lab = rgb_to_lab(rgb)
    one, two = _model(regress=1.0).train(), _model(regress=2.0).train()
    q = len(one.centres)
    raw = torch.randn(2, q + 2, 4, 4, requires_grad=True)
    ce = _model().train().loss(raw[:, :q], lab, rgb)
    l1, l2 = one.loss(raw, lab, rgb), two.loss(raw, lab, rgb)
    assert torch.allclose(l2 - ce, 2 * (l1 - ce), atol=1e-4)
    l1.backward()
    assert raw.grad[:, q:].abs().sum() > 0
    flat = lab.clone()
    flat[:, 1:] = lab[:, 1:].mean((2, 3), keepdim=True)  # a*b* constant per image: exact at half resolution too
    from autocolor.colour import AB_SCALE, lab_to_rgb
    flat_rgb = lab_to_rgb(flat)
    exact = torch.cat([raw[:, :q].detach(), flat[:, 1:, ::2, ::2] / AB_SCALE], 1)
    worse = exact.clone()
    worse[:, q:] += 0.2
    assert one.loss(exact, flat, flat_rgb) < one.loss(worse, flat, flat_rgb) - 0.5


def test_tune_vivid_writes_the_chosen_decoding(tmp_path, fake_cifar, monkeypatch, capsys):
    """benchmarks/tune_vivid.py --write: every decoding is scored on validation, the rule's choice and the whole
    table land in the card, and the model then loads with them."""
    import json

    from autocolor.registry import build
    from autocolor.weights import load_model, save_model

    bench = load_script("benchmarks/tune_vivid.py")
    torch.manual_seed(0)
    path = save_model(build("unet-vivid", widths=(8, 16)).eval(), tmp_path / "v.safetensors", {"name": "v"})
    argv = [str(path), "--calibrate", "--flip-tta", "--shift-tta", "2", "--centred", "--temperatures", "1.0",
            "--boosts", "0", "0.02", "--max-delta", "99", "--data", str(fake_cifar), "--write"]
    monkeypatch.setattr("sys.argv", ["tune_vivid.py", *argv])
    bench.main()
    card = json.loads(path.with_suffix(".json").read_text())
    table = card["decoding_selection"]["table"]
    assert [row["boost"] for row in table] == [0.0, 0.02]
    best = max(table, key=lambda row: row["psnr"])  # --max-delta 99 admits both: the best PSNR wins
    cfg = card["config"]
    assert (cfg["boost"], cfg["calibrate"], cfg["flip_tta"], cfg["shift_tta"], cfg["boost_centred"]) == (
        best["boost"], True, True, 2, True)
    assert "--centred" in card["decoding_selection"]["command"]
    model, _ = load_model(path)
    assert (model.boost, model.shift_tta, model.boost_centred) == (best["boost"], 2, True)
    assert "chosen temperature 1.0" in capsys.readouterr().out


def test_tune_vivid_chooses_the_mix_of_a_regress_run(tmp_path, fake_cifar, monkeypatch):
    """--mixes scores every mix of a run trained with ``regress``; the chosen one is written to the card."""
    import json

    from autocolor.registry import build
    from autocolor.weights import load_model, save_model

    bench = load_script("benchmarks/tune_vivid.py")
    torch.manual_seed(0)
    model = build("unet-vivid", widths=(8, 16), regress=1.0).eval()
    path = save_model(model, tmp_path / "r.safetensors", {"name": "r"})
    argv = [str(path), "--calibrate", "--temperatures", "1.0", "--boosts", "0", "--mixes", "0", "1",
            "--max-delta", "99", "--data", str(fake_cifar), "--write"]
    monkeypatch.setattr("sys.argv", ["tune_vivid.py", *argv])
    bench.main()
    card = json.loads(path.with_suffix(".json").read_text())
    table = card["decoding_selection"]["table"]
    assert [row["mix"] for row in table] == [0.0, 1.0]
    assert table[0]["psnr"] != table[1]["psnr"]  # the direct a*b* and the bins' mean differ
    best = max(table, key=lambda row: row["psnr"])
    assert card["config"]["mix"] == best["mix"]
    assert load_model(path)[0].mix == best["mix"]


def test_boost_max_caps_each_images_scale():
    """boost_max clamps the per-image scale the boost rule picks; 5 (the grid's top) changes nothing."""
    m = _model()
    q = len(m.centres)
    unsure = torch.ones(q)
    p = torch.stack([unsure / unsure.sum(), unsure.roll(7) / unsure.sum()])[:, :, None, None].expand(2, q, 4, 4)
    L = torch.full((2, 1, 8, 8), 0.6)
    ab = torch.einsum("nqhw,qc->nchw", p, m.centres) + torch.tensor([3.0, -2.0])[None, :, None, None]
    free = m.boost_factor(L, p, ab, strength=0.2).flatten()
    assert free.min() > 2.0, "a strong boost on unsure predictions picks large scales"
    assert torch.equal(m.boost_factor(L, p, ab, strength=0.2, max_scale=1.5).flatten(), free.clamp(max=1.5))
    assert torch.equal(m.boost_factor(L, p, ab, strength=0.2, max_scale=5.0).flatten(), free)
    raw = p.log()
    capped = _model(boost_max=1.0)
    assert torch.equal(capped.chroma(L, raw, temperature=1.0, boost=0.2), m.chroma(L, raw, temperature=1.0, boost=0.0))
    assert torch.equal(m.chroma(L, raw, temperature=1.0, boost=0.2, boost_max=1.0),
                       m.chroma(L, raw, temperature=1.0, boost=0.0))
    for bad in (0.5, 6.0):
        with pytest.raises(ValueError, match="boost_max"):
            _model(boost_max=bad)
        with pytest.raises(ValueError, match="boost_max"):
            m.chroma(L, raw, boost=0.2, boost_max=bad)


def test_tune_vivid_says_when_no_decoding_met_the_rule():
    bench = load_script("benchmarks/tune_vivid.py")
    rows = [{"psnr": 23.3, "delta_colorfulness": 25.0}, {"psnr": 22.3, "delta_colorfulness": 21.8}]
    row, rule = bench.choose(rows, max_delta=1.5)
    assert row is rows[1] and rule == "no decoding met delta colourfulness <= 1.5: the smallest delta colourfulness"
    row, rule = bench.choose([*rows, {"psnr": 22.0, "delta_colorfulness": 1.0}], max_delta=1.5)
    assert row["psnr"] == 22.0 and rule == "best PSNR with delta colourfulness <= 1.5"
