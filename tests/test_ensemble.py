"""vivid-ensemble: averaged bin distributions, the fidelity mix, the boost, float16 storage and assembly."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import load_script

from autocolor.errors import AutocolorError
from autocolor.registry import build
from autocolor.weights import load_card, load_model, save_model

ensemble_script = load_script("scripts/ensemble.py")


def _runs(tmp_path, n_vivid: int = 2, n_fidelity: int = 1) -> tuple[list[str], list[str]]:
    """Saved tiny runs with distinct weights, confident logits and non-uniform class weights."""
    vivid, fidelity = [], []
    for i in range(n_vivid):
        torch.manual_seed(10 + i)
        m = build("unet-vivid", widths=(8, 16), flip_tta=bool(i % 2)).eval()
        with torch.no_grad():
            m.head.weight.mul_(40.0)
            m.class_weight.copy_(torch.rand(m.bins, generator=torch.Generator().manual_seed(i)) + 0.5)
        vivid.append(str(save_model(m, tmp_path / f"v{i}.safetensors", {"name": f"v{i}", **_training(i)})))
    for i in range(n_fidelity):
        torch.manual_seed(20 + i)
        m = build("unet", widths=(8, 16)).eval()
        with torch.no_grad():
            m.head.weight.mul_(20.0)
        fidelity.append(str(save_model(m, tmp_path / f"f{i}.safetensors", {"name": f"f{i}", **_training(i)})))
    return vivid, fidelity


def _training(i: int) -> dict:
    return {"training": {"command": f"autocolor train --seed {i}", "data": "d", "seconds": 10.0 + i, "machine": "m"}}


def _L(n: int = 3, size: int = 16) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([(0.2 + 0.6 * (xs * (k + 1) % 1.0) * ys)[None] for k in range(n)])


def test_one_member_decodes_like_the_calibrated_vivid_model(tmp_path):
    """Without fidelity members or boost, the ensemble of one run is that run's calibrated annealed mean."""
    (v,), _ = _runs(tmp_path, 1, 0)
    member, _ = load_model(v, overrides={"calibrate": True})
    path = ensemble_script.assemble(str(tmp_path / "e.safetensors"), [v])
    ens, _ = load_model(path)
    L = _L()
    with torch.no_grad():
        for t in (1.0, 0.5):
            ref = member.chroma(L, member(L), temperature=t, boost=0.0)
            out = ens.chroma(L, ens(L), temperature=t)
            assert ref.abs().max() > 5 and (out - ref).abs().max() < 1e-3


def test_members_are_averaged_and_the_fidelity_mix_is_exact(tmp_path):
    vivid, fidelity = _runs(tmp_path)
    members = [load_model(v, overrides={"calibrate": True})[0] for v in vivid]
    fid, _ = load_model(fidelity[0])
    L = _L()
    with torch.no_grad():
        p = torch.stack([torch.softmax(m(L)[:, :m.bins] - m.class_weight.log()[None, :, None, None], 1)
                         for m in members]).mean(0)
        bins = F.interpolate(torch.einsum("nqhw,qc->nchw", p, members[0].centres), size=L.shape[-2:],
                             mode="bilinear", align_corners=False)
        direct = fid.chroma(L, fid(L))
        for w in (0.25, 1.0):
            path = ensemble_script.assemble(str(tmp_path / f"e{w}.safetensors"), vivid, fidelity, fidelity_weight=w)
            ens, _ = load_model(path)
            out = ens.chroma(L, ens(L))
            assert (out - (w * direct + (1 - w) * bins)).abs().max() < 1e-3
    assert (bins - direct).abs().max() > 1  # the two estimates differ, so the mix is tested


def test_boost_scales_each_images_colour_contrast_about_its_mean(tmp_path):
    vivid, fidelity = _runs(tmp_path)
    ens, _ = load_model(ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid, fidelity, 0.4))
    L = _L(4)
    with torch.no_grad():
        raw = ens(L)
        plain, boosted = ens.chroma(L, raw), ens.chroma(L, raw, boost=0.05)
    d0 = plain - plain.mean((2, 3), keepdim=True)
    d1 = boosted - boosted.mean((2, 3), keepdim=True)
    scale = (d1 * d0).flatten(1).sum(1) / d0.pow(2).flatten(1).sum(1)
    assert torch.allclose(d1, scale[:, None, None, None] * d0, atol=1e-3)  # one scale per image
    assert torch.allclose(boosted.mean((2, 3)), plain.mean((2, 3)), atol=1e-3)  # the tint is kept
    assert scale.min() >= 1 - 1e-4 and scale.max() > 1.05
    with torch.no_grad():
        capped = ens.chroma(L, raw, boost=0.05, boost_max=1.05)
        assert torch.equal(ens.chroma(L, raw, boost=0.05, boost_max=1.0), plain)  # a cap of 1: no boost
    d2 = capped - capped.mean((2, 3), keepdim=True)
    capped_scale = (d2 * d0).flatten(1).sum(1) / d0.pow(2).flatten(1).sum(1)
    assert torch.allclose(capped_scale, scale.clamp(max=1.05), atol=1e-3)


def test_boost_max_is_stored_and_loaded(tmp_path):
    vivid, fidelity = _runs(tmp_path)
    path = ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid, fidelity, 0.4, boost=0.05)
    card = load_card(path)
    card["config"]["boost_max"] = 1.0
    path.with_suffix(".json").write_text(json.dumps(card))
    ens, _ = load_model(path)
    L = _L(2)
    with torch.no_grad():
        raw = ens(L)
        assert ens.boost_max == 1.0
        assert torch.equal(ens.chroma(L, raw), ens.chroma(L, raw, boost=0.0))
    with pytest.raises(ValueError, match="boost_max"):
        build("vivid-ensemble", vivid=[{"widths": [8, 16]}], boost_max=0.5)


def test_half_storage_halves_the_file_and_keeps_the_outputs(tmp_path):
    vivid, fidelity = _runs(tmp_path)
    full = ensemble_script.assemble(str(tmp_path / "full.safetensors"), vivid, fidelity, 0.4, boost=0.02)
    half = ensemble_script.assemble(str(tmp_path / "half.safetensors"), vivid, fidelity, 0.4, boost=0.02, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert load_card(half)["storage"].startswith("float16") and "storage" not in load_card(full)
    L = _L()
    with torch.no_grad():
        outs = [m.chroma(L, m(L)) for m in (load_model(full)[0], load_model(half)[0])]
    assert outs[0].abs().max() > 5 and (outs[0] - outs[1]).abs().max() < 0.5


def test_card_names_every_member_and_sums_their_seconds(tmp_path):
    vivid, fidelity = _runs(tmp_path)
    path = ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid, fidelity, 0.4, command="python x")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"] == "vivid-ensemble" and card["training"]["command"] == "python x"
    assert [m["role"] for m in card["members"]] == ["vivid", "vivid", "fidelity"]
    assert [m["training"]["command"] for m in card["members"]] == [f"autocolor train --seed {i}" for i in (0, 1, 0)]
    assert card["training"]["seconds"] == 10.0 + 11.0 + 10.0
    assert [c["flip_tta"] for c in card["config"]["vivid"]] == [False, True]  # members keep their own views


def test_wrong_members_and_training_are_refused(tmp_path):
    vivid, fidelity = _runs(tmp_path, 1, 1)
    with pytest.raises(AutocolorError, match="must be unet-vivid"):
        ensemble_script.assemble(str(tmp_path / "e.safetensors"), fidelity)
    with pytest.raises(ValueError, match="fidelity_weight"):
        build("vivid-ensemble", vivid=[{}], fidelity_weight=0.5)
    with pytest.raises(ValueError, match="scripts/ensemble.py"):
        build("vivid-ensemble")
    ens, _ = load_model(ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid))
    with pytest.raises(AutocolorError, match="not trained"):
        ens.loss()


def test_train_refuses_an_ensemble(tmp_path):
    from autocolor.train import TrainConfig, train

    cfg = TrainConfig(model="vivid-ensemble", model_config={"vivid": [{"widths": [8, 16]}]}, epochs=1,
                      out=str(tmp_path / "run"), device="cpu", data=str(tmp_path / "nothing"), command="x")
    with pytest.raises(AutocolorError, match="assembled from trained runs"):
        train(cfg, log=lambda *a: None)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_tune_vivid_sweeps_an_ensembles_fidelity_weight(tmp_path, fake_cifar, monkeypatch, capsys):
    vivid, fidelity = _runs(tmp_path)
    path = ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid, fidelity, 0.5)
    bench = load_script("benchmarks/tune_vivid.py")
    argv = [str(path), "--temperatures", "1.0", "--boosts", "0", "0.03", "--fidelity-weights", "0.2", "0.8",
            "--max-delta", "1000", "--data", str(fake_cifar), "--write"]
    monkeypatch.setattr("sys.argv", ["tune_vivid.py", *argv])
    bench.main()
    table = load_card(path)["decoding_selection"]["table"]
    assert [(row["fidelity_weight"], row["boost"]) for row in table] == [(0.2, 0), (0.2, 0.03), (0.8, 0), (0.8, 0.03)]
    assert len({row["psnr"] for row in table}) == 4
    best = max(table, key=lambda row: row["psnr"])  # --max-delta 1000 admits all: the best PSNR wins
    model, _ = load_model(path)
    assert (model.fidelity_weight, model.boost) == (best["fidelity_weight"], best["boost"])
    assert "fidelity_weight" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["tune_vivid.py", str(path), "--flip-tta"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "fixed" in capsys.readouterr().err


def test_tune_vivid_sweeps_boost_max_and_writes_the_choice(tmp_path, fake_cifar, monkeypatch, capsys):
    vivid, fidelity = _runs(tmp_path)
    path = ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid, fidelity, 0.5)
    bench = load_script("benchmarks/tune_vivid.py")
    argv = [str(path), "--temperatures", "1.0", "--boosts", "0.05", "--boost-maxes", "1", "5",
            "--max-delta", "1000", "--data", str(fake_cifar), "--write"]
    monkeypatch.setattr("sys.argv", ["tune_vivid.py", *argv])
    bench.main()
    table = load_card(path)["decoding_selection"]["table"]
    assert [row["boost_max"] for row in table] == [1.0, 5.0]
    assert table[0]["colorfulness"] < table[1]["colorfulness"]  # the cap of 1 turned the boost off
    best = max(table, key=lambda row: row["psnr"])
    assert load_model(path)[0].boost_max == best["boost_max"]
    monkeypatch.setattr("sys.argv", ["tune_vivid.py", str(path), "--min-psnr", "24"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "--classifier" in capsys.readouterr().err


def test_tune_vivid_semantic_rule_keeps_the_psnr_floor():
    choose = load_script("benchmarks/tune_vivid.py").choose

    def row(psnr, delta, gap):
        return {"psnr": psnr, "delta_colorfulness": delta, "semantic_gap_closed": gap}

    rows = [row(24.9, 1.0, 0.50), row(24.82, 1.2, 0.58), row(24.79, 1.0, 0.62), row(25.0, 3.0, 0.70),
            row(24.81, 1.4, 0.58)]
    assert choose(rows, 1.5)[0] is rows[0]  # the PSNR rule
    best, rule = choose(rows, 1.5, min_psnr=24.8)
    assert best is rows[1]  # 0.62 is under the PSNR floor, 0.70 over the delta limit; the tie goes to PSNR
    assert "semantic" in rule and "24.8" in rule
    assert choose(rows, 1.5, min_psnr=25.5)[0] is rows[0]  # nothing keeps the floor: back to the PSNR rule
    assert choose([row(24.9, 3.0, 0.5), row(24.0, 2.5, 0.4)], 1.5)[0]["delta_colorfulness"] == 2.5


def test_halve_rewrites_a_saved_model_in_float16(tmp_path):
    from safetensors.torch import load_file

    from autocolor.weights import halve

    _, (f,) = _runs(tmp_path, 0, 1)
    before = load_model(f)[0]
    size = (tmp_path / "f0.safetensors").stat().st_size
    halve(f)
    state = load_file(f)
    assert {v.dtype for k, v in state.items() if k.endswith("conv.weight") or v.dim() == 4} == {torch.float16}
    assert all(v.dtype != torch.float16 for v in state.values() if v.dim() == 1)
    assert (tmp_path / "f0.safetensors").stat().st_size < 0.6 * size
    L = _L()
    with torch.no_grad():
        after = load_model(f)[0]
        assert (after.chroma(L, after(L)) - before.chroma(L, before(L))).abs().max() < 0.5


def test_boost_rules_bisect_finds_the_crossing():
    bisect = load_script("benchmarks/boost_rules.py").bisect
    assert bisect(lambda x: x * x, 0.0, 4.0, 2.0) == pytest.approx(2 ** 0.5, abs=1e-3)
    assert bisect(lambda x: x, 0.0, 1.0, 5.0) == 1.0  # never reached: the top of the range


def test_boost_rules_compare_at_the_cards_colourfulness(tmp_path, fake_cifar, monkeypatch, capsys):
    vivid, fidelity = _runs(tmp_path)
    path = ensemble_script.assemble(str(tmp_path / "e.safetensors"), vivid, fidelity, 0.5)
    card = load_card(path)
    card["config"].update(boost=0.03, boost_max=3.0)
    (tmp_path / "e.json").write_text(json.dumps(card))
    bench = load_script("benchmarks/boost_rules.py")
    monkeypatch.setattr("sys.argv", ["boost_rules.py", "--model", str(path), "--caps", "1", "3", "--data",
                                     str(fake_cifar)])
    bench.main()
    out = capsys.readouterr().out
    rows = {r.split("|")[1].strip(): r.split("|") for r in out.splitlines() if r.startswith("| ") and "---" not in r}
    assert rows["card's decoding"][2].strip() == "boost 0.03, cap 3"
    target = float(rows["card's decoding"][4])
    assert float(rows["boost, cap 3"][4]) == pytest.approx(target, abs=0.02)  # back to the card's own colour
    for name in ("boost", "one scale"):
        assert abs(float(rows[name][4]) - target) < 0.5
    assert float(rows["boost, cap 1"][4]) < target  # a cap of 1 is no boost: that colour is out of its reach
    assert rows["boost, cap 1"][2].strip() == "strength 0.20000"
    monkeypatch.setattr("sys.argv", ["boost_rules.py", "--model", vivid[0], "--data", str(fake_cifar)])
    with pytest.raises(AutocolorError, match="vivid-ensemble"):
        bench.main()
