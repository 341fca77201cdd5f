"""`autocolor evaluate`: one JSON object with the model's and the grey input's metrics, and a grid PNG."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch

from autocolor import cli, data, metrics, models, weights
from autocolor.colour import grey_rgb, greyscale, to_float, to_uint8
from autocolor.errors import AutocolorError

PNG = b"\x89PNG\r\n\x1a\n"
KEYS = ("psnr", "ssim", "colorfulness", "delta_colorfulness")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An untrained, narrow seed-lab model saved as a run folder."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("run")
    weights.save_model(models.build("seed-lab", widths=(8, 16, 32)), out / "model.safetensors", {"name": "tiny"})
    return out


@pytest.fixture(scope="module")
def result(run_dir, cifar_dir, tmp_path_factory):
    """Output of `autocolor evaluate --json` on the first 200 test images (run once for the module)."""
    grid = tmp_path_factory.mktemp("eval") / "grid.png"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["evaluate", "--model", str(run_dir), "--max-images", "200", "--json", "--grid", str(grid),
                         "--data", str(cifar_dir), "--device", "cpu"])
    assert code == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines  # exactly one JSON object on stdout, no progress bar
    assert err.getvalue() == ""
    return json.loads(lines[0]), grid


def test_json_has_the_metrics(result, run_dir):
    res, _ = result
    assert res["n_images"] == 200 and res["split"] == "test" and res["architecture"] == "seed-lab"
    assert res["model"] == str(run_dir)
    from autocolor.runtime import pick_precision

    assert res["precision"] == pick_precision("auto", torch.device("cpu"))  # the fast path is the default
    for d in (res, res["grey_baseline"]):
        for k in KEYS:
            assert isinstance(d[k], float) and math.isfinite(d[k]), k
        assert 0 <= d["ssim"] <= 1 and 0 <= d["auc"] <= 1
    assert math.isfinite(res["ground_truth"]["colorfulness"]) and res["ground_truth"]["colorfulness"] > 10


def test_grey_baseline_is_plausible(result):
    g = result[0]["grey_baseline"]
    assert 23.0 <= g["psnr"] <= 27.0
    assert g["colorfulness"] == 0.0  # grey_rgb gives R = G = B exactly
    assert g["delta_colorfulness"] == result[0]["ground_truth"]["colorfulness"]


def test_grey_baseline_matches_direct_computation(result, splits):
    images = splits["get"]("test").images[:200]
    grey = to_uint8(grey_rgb(greyscale(to_float(images))))
    assert float(metrics.psnr(grey, images).mean()) == pytest.approx(result[0]["grey_baseline"]["psnr"], abs=1e-3)


def test_grid_png_written(result):
    _, grid = result
    assert result[0]["grid"] == str(grid)
    assert grid.read_bytes()[:8] == PNG


def test_default_grid_name_and_text_output(run_dir, cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--model", str(run_dir), "--max-images", "20", "--data", str(cifar_dir),
                     "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir} on 20 test images" in out and "psnr" in out
    assert "semantic_accuracy" in out and "grey-to-colour gap closed" in out and "skipped" not in out
    assert (tmp_path / f"eval-{run_dir.name}.png").read_bytes()[:8] == PNG


def test_model_for_larger_images_is_refused_on_cifar(cifar_dir, tmp_path, capsys):
    """A model whose input sides must be multiples of 64 (trained on a folder of photos) cannot score 32x32."""
    path = weights.save_model(models.build("unet", widths=[4] * 6, stem=2), tmp_path / "big" / "model.safetensors",
                              {"name": "big"})
    assert cli.main(["evaluate", "--model", str(path.parent), "--data", str(cifar_dir), "--no-grid"]) == 1
    err = capsys.readouterr().err
    assert "multiples of 64 and CIFAR-10's are 32" in err and "--images DIR" in err and "Traceback" not in err


def test_no_grid_writes_no_png(run_dir, cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--model", str(run_dir), "--max-images", "20", "--data", str(cifar_dir),
                     "--device", "cpu", "--no-grid"]) == 0
    out = capsys.readouterr().out
    assert "psnr" in out and "grid" not in out and not list(tmp_path.glob("*.png"))
    assert cli.main(["evaluate", "--model", str(run_dir), "--no-grid", "--grid", "g.png"]) == 1
    assert "contradict" in capsys.readouterr().err


def test_metrics_basics():
    a = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert metrics.psnr(a, a).tolist() == [100.0, 100.0]
    assert torch.allclose(metrics.ssim(a, a), torch.ones(2))
    grey = a[:, :1].expand(-1, 3, -1, -1)
    assert metrics.colourfulness(grey).abs().max() == 0
    assert metrics.auc(metrics.ab_error_cdf(a, a)) == pytest.approx(1.0, abs=0.01)


def test_ssim_fits_its_window_to_images_under_11_pixels():
    """SSIM of 8 x 8 images (``train --image-size 8``) is defined: a 7-pixel window, 1 for identical images."""
    assert [metrics.ssim_window(*hw) for hw in ((32, 32), (8, 9), (10, 64), (11, 11))] == [11, 7, 9, 11]
    a = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    b = a.flip(-1)
    torch.testing.assert_close(metrics.ssim(a, a), torch.ones(2))
    s = metrics.ssim(a, b)
    assert torch.isfinite(s).all() and (s < 0.5).all()
    torch.testing.assert_close(metrics.ssim_map_float(to_float(a), to_float(b)).flatten(1).mean(1), s,
                               atol=1e-5, rtol=0)


def test_ab_error_cdf_with_precomputed_target_ab():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=gen)
    b = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=gen)
    cdf = metrics.ab_error_cdf(a, b)
    assert torch.equal(metrics.ab_error_cdf(a, b, metrics.target_ab(b)), cdf)
    assert 0.0 < float(cdf[10]) < float(cdf[100]) <= 1.0  # random colours: errors spread over the thresholds


def test_overrides_score_other_views_without_touching_the_card(cifar_dir, tmp_path):
    """``overrides`` (what benchmarks/tta_default.py passes) score the same weights with other test-time views:
    the same numbers as a card that stores those views, and the run's card file is left byte for byte."""
    from autocolor.evaluate import evaluate

    torch.manual_seed(0)
    run = tmp_path / "run"
    weights.save_model(models.build("unet", widths=(8, 16, 32)).eval(), run / "model.safetensors", {"name": "u"})
    card = (run / "model.json").read_text()
    kw = dict(split="val", max_images=64, data=str(cifar_dir), device="cpu", progress=False)
    plain = evaluate(run, **kw)
    viewed = evaluate(run, overrides={"flip_tta": True, "shift_tta": 1}, **kw)
    assert (run / "model.json").read_text() == card and viewed["psnr"] != plain["psnr"]
    stored = json.loads(card)
    stored["config"].update(flip_tta=True, shift_tta=1)
    (run / "model.json").write_text(json.dumps(stored))
    assert evaluate(run, **kw)["psnr"] == viewed["psnr"]


def test_several_decodings_of_one_pass_match_separate_calls(tmp_path, fake_cifar, monkeypatch):
    """``decodings``: the network runs once and each decoding is scored as its own ``evaluate`` call would."""
    from autocolor import evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "classifier_at", lambda path: None)
    torch.manual_seed(0)
    path = weights.save_model(models.build("unet-vivid", widths=(8, 16)).eval(), tmp_path / "v.safetensors",
                              {"name": "v"})
    kw = {"split": "val", "max_images": 16, "data": str(fake_cifar), "device": "cpu", "progress": False,
          "calibrate": True}
    many = evaluate_mod.evaluate(path, decodings=[{"boost": 0.0}, {"boost": 0.05, "temperature": 0.5}], **kw)
    one = [evaluate_mod.evaluate(path, boost=0.0, **kw), evaluate_mod.evaluate(path, boost=0.05, temperature=0.5, **kw)]
    assert many == one and many[0]["colorfulness"] != many[1]["colorfulness"]


def test_semantic_ci_matches_evaluate_and_brackets_it(tmp_path, fake_cifar, monkeypatch, capsys):
    """benchmarks/semantic_ci.py: the gap closed equals evaluate's figure; its bootstrap interval contains it."""
    from conftest import load_script

    from autocolor import evaluate as evaluate_mod

    bench = load_script("benchmarks/semantic_ci.py")
    flags = [torch.tensor(x, dtype=torch.float64) for x in ([1, 1, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1])]
    assert bench.gap_closed(*flags).item() == (0.75 - 0.25) / (1.0 - 0.25)
    torch.manual_seed(0)
    path = weights.save_model(models.build("seed-lab", widths=(8, 16, 32)).eval(), tmp_path / "m.safetensors",
                              {"name": "m"})
    monkeypatch.setattr("sys.argv", ["semantic_ci.py", str(path), "--split", "val", "--resamples", "200",
                                     "--data", str(fake_cifar)])
    bench.main()
    row = capsys.readouterr().out.strip().splitlines()[-1].split("|")
    ref = evaluate_mod.evaluate(path, split="val", data=str(fake_cifar), device="cpu", progress=False)
    assert ref["semantic_gap_closed"] is not None  # the fake images leave a gap (grey 0.06, originals 0.10)
    assert float(row[2]) == round(ref["semantic_gap_closed"], 3)
    lo, hi = (float(x) for x in row[3].split("–"))
    assert lo <= float(row[2]) <= hi


def test_ssim_references_bracket_the_grey_input_and_the_truth(tmp_path, fake_cifar, monkeypatch, capsys):
    """benchmarks/ssim_references.py: its grey row is evaluate's grey baseline; the truth scores SSIM 1; a --model
    row is evaluate's SSIM, and the per-image oracle bounds lie above both the model and the grey input."""
    from conftest import load_script

    from autocolor import evaluate as evaluate_mod
    from autocolor.colour import lab_and_input

    torch.manual_seed(0)
    path = weights.save_model(models.build("seed-lab", widths=(8, 16, 32)).eval(), tmp_path / "m.safetensors",
                              {"name": "m"})
    bench = load_script("benchmarks/ssim_references.py")
    monkeypatch.setattr("sys.argv", ["ssim_references.py", "--data", str(fake_cifar), "--model", str(path)])
    bench.main()
    rows = {r.split("|")[1].strip(): r.split("|") for r in capsys.readouterr().out.splitlines() if r.startswith("| ")}
    monkeypatch.setattr(evaluate_mod, "classifier_at", lambda path: None)
    ref = evaluate_mod.evaluate(path, split="val", data=str(fake_cifar), device="cpu", progress=False)
    assert abs(float(rows["grey input"][2]) - ref["grey_baseline"]["ssim"]) <= 1e-4  # printed to 4 places
    assert float(rows["truth"][2]) == 1.0
    scaled = [float(rows[f"truth x {f}"][2]) for f in ("0.25", "0.5", "0.75")]
    assert float(rows["grey input"][2]) < scaled[0] < scaled[1] < scaled[2] < 1.0
    own, _guided, either, best = (float(rows[k][2]) for k in rows if k.startswith(f"`{path}`"))
    assert abs(own - ref["ssim"]) <= 1e-4
    assert max(own, float(rows["grey input"][2])) <= either <= best  # scale 0 is grey, scale 1 the model itself
    images = data.load_split("val", fake_cifar).images
    lab, L = lab_and_input(to_float(images))
    half, spread = bench.model_rows("half", images, L, lab[:, 1:] * 0.5)  # half the true chroma: scale 2 restores it
    assert spread.endswith("0.0% below the grey input")
    assert half[0][1] <= half[2][1] < 1.0 and half[3][1] == 1.0
    flat = torch.full_like(L, 0.5)  # a constant guide: the filter is two 3 x 3 box blurs of the a*b*
    torch.testing.assert_close(bench.guided_filter(flat, lab[:, 1:]), bench.box(bench.box(lab[:, 1:], 1), 1),
                               atol=1e-3, rtol=0)


def test_ssim_objective_arms_share_batches_and_the_term_changes_training(tmp_path, fake_cifar):
    """benchmarks/ssim_objective.py: fine-tuning is deterministic per arm; a non-zero SSIM weight changes it."""
    from conftest import load_script

    from autocolor.data import load_split

    bench = load_script("benchmarks/ssim_objective.py")
    torch.manual_seed(0)
    path = weights.save_model(models.build("unet", widths=(8, 16)).eval(), tmp_path / "u.safetensors",
                              {"name": "u"})
    train = load_split("val", str(fake_cifar))  # (the fake data's 50 images all fall in the validation split)
    bench.BATCH = 16
    states = [bench.fine_tune(str(path), w, 3, 1e-3, train)[0].state_dict() for w in (0.0, 0.0, 50.0)]
    start = models.build("unet", widths=(8, 16)).state_dict()
    key = "head.weight"
    assert torch.equal(states[0][key], states[1][key])
    assert not torch.equal(states[0][key], states[2][key])
    assert not torch.equal(states[0][key], start[key].to(states[0][key].dtype))


def test_ensemble_rows_are_evaluates_and_the_mean_differs(tmp_path, fake_cifar, monkeypatch, capsys):
    """benchmarks/ensemble.py: a one-run row scores as ``evaluate`` does; the average is a new colouring."""
    from conftest import load_script

    from autocolor import evaluate as evaluate_mod

    bench = load_script("benchmarks/ensemble.py")
    paths = []
    for i in range(3):
        torch.manual_seed(i)
        net = models.build("unet", widths=(8, 16)).eval()
        with torch.no_grad():
            net.head.weight.mul_(30.0)  # colourful enough that the runs' colourings differ after 8 bits
        paths.append(str(weights.save_model(net, tmp_path / f"u{i}.safetensors", {"name": f"u{i}"})))

    def rows(argv: list[str]) -> list[list[str]]:
        monkeypatch.setattr("sys.argv", ["ensemble.py", *argv, "--data", str(fake_cifar)])
        bench.main()
        out = capsys.readouterr().out
        assert "mean of all 3:" in out
        return [r.split("|") for r in out.splitlines() if r.startswith("| /")]

    table = rows([*paths, "--subsets"])
    a, b, c = paths
    assert [r[1].strip() for r in table] == [a, b, c, f"{a} + {b}", f"{a} + {c}", f"{b} + {c}", f"{a} + {b} + {c}"]
    assert [r[1].strip() for r in rows(paths)] == [a, b, c, f"{a} + {b} + {c}"]  # without --subsets: all only
    monkeypatch.setattr(evaluate_mod, "classifier_at", lambda path: None)
    for path, row in zip(paths, table, strict=False):
        ref = evaluate_mod.evaluate(path, split="val", data=str(fake_cifar), device="cpu", progress=False)
        assert float(row[2]) == pytest.approx(ref["ssim"], abs=6e-6) and float(row[3]) == pytest.approx(ref["psnr"],
                                                                                                        abs=6e-4)
    assert float(table[3][3]) not in (float(table[0][3]), float(table[1][3]))
    seed = weights.save_model(models.build("unet-vivid", widths=(8, 16)).eval(), tmp_path / "v.safetensors",
                              {"name": "v"})
    monkeypatch.setattr("sys.argv", ["ensemble.py", str(seed), "--data", str(fake_cifar)])
    with pytest.raises(AutocolorError, match="a\\*b\\* regressions only"):
        bench.main()
