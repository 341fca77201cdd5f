"""CLI hygiene: help, one-line errors without tracebacks, exit codes, and `autocolor diagram`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from autocolor import cli, models, weights
from autocolor.diagram import trace_layers

PNG = b"\x89PNG\r\n\x1a\n"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("autocolor: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "colorize", "demo", "diagram"):
        assert f"  {command} " in out or f"  {command}\n" in out, command


def test_bare_command_shows_the_help_without_an_error_line(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: autocolor [OPTIONS] COMMAND") and "error" not in err and "  colorize " in err


def test_train_list_marks_models_that_are_not_trained(capsys):
    assert cli.main(["train", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {"seed", "seed-lab", "unet", "unet-vivid"} <= set(lines)
    assert [line for line in lines if "not trained" in line] == [
        "vivid-ensemble  (not trained: assembled from trained runs, scripts/ensemble.py)"]


def test_subcommand_help(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--max-images" in out and "--resume" in out and "--stop-after" in out


@pytest.fixture
def empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


@pytest.mark.parametrize("argv, code, expect", [
    (["bogus"], 2, "No such command 'bogus'. (see 'autocolor --help')"),
    (["train", "--epochs", "0"], 2, "(see 'autocolor train --help')"),
    (["train", "--bogus"], 2, "No such option '--bogus'"),
    (["evaluate", "--split", "dev"], 2, "Invalid value for '--split'"),
    (["diagram", "--model", "seed"], 2, "Missing option '-o'"),
    (["diagram", "--model", "nope", "-o", "{tmp}/x.png"], 1, "unknown model 'nope'; known:"),
    (["diagram", "--model", "vivid-ensemble", "-o", "{tmp}/x.png"], 1, "cannot draw vivid-ensemble: "),
    (["train", "--model", "vivid-ensemble", "--model-config", '{"vivid": [{}]}', "--out", "{tmp}/run", "--device",
      "cpu"], 1, "vivid-ensemble is assembled from trained runs (scripts/ensemble.py), not trained"),
    (["train", "--model", "vivid-ensemble", "--out", "{tmp}/run", "--device", "cpu"], 1,
     "vivid-ensemble is assembled from trained runs (scripts/ensemble.py), not trained"),
    (["train", "--model", "nope", "--out", "{tmp}/run", "--device", "cpu"], 1, "unknown model 'nope'"),
    (["evaluate", "--model", "default", "--grid", "{tmp}/grid.jpg"], 1, "--grid {tmp}/grid.jpg: give a .png"),
    (["evaluate", "--model", "default", "--grid", "{tmp}"], 1, "give a .png file name"),
    (["evaluate", "--model", "default", "--grid", "{tmp}/weights.pt/g.png"], 1,
     "--grid {tmp}/weights.pt/g.png: {tmp}/weights.pt is a file, not a folder (or use --no-grid)"),
    (["evaluate", "--model", "default", "--classifier", "{tmp}/run/model.safetensors"], 1,
     "{tmp}/run/model.safetensors is not a classifier from python -m autocolor.classifier"),
    (["evaluate", "--model", "{tmp}/unfinished"], 1, "training in {tmp}/unfinished is unfinished"),
    (["evaluate", "--model", "{tmp}/missing.safetensors"], 1, "weights file not found: {tmp}/missing.safetensors"),
    (["evaluate", "--model", "{tmp}/weights.pt"], 1, "pickled weights are refused"),
    (["evaluate", "--model", "no-such-model"], 1, "no trained model 'no-such-model'"),
    (["evaluate", "--model", "default", "--classifier", "{tmp}/c.safetensors"], 1, "no classifier at {tmp}/c.safe"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--device", "cpu"], 1, "--data {tmp}: no cifar-10-batches-py"),
    (["train", "--device", "tpu", "--out", "{tmp}/run"], 1, "unknown device 'tpu'"),
    (["diagram", "-o", "{tmp}/weights.pt/x.png"], 1, "{tmp}/weights.pt is a file, not a folder"),
    (["diagram", "-o", "{tmp}/x.svg"], 1, "-o {tmp}/x.svg: the file is written as PNG; give a .png name"),
    (["diagram", "-o", "{tmp}/weights.pt"], 1, "give a .png name"),
    (["demo", "-o", "{tmp}/sheet.jpg"], 1, "give a .png name"),
    (["export", "-o", "{tmp}/run/model.safetensors"], 1, "the file is written as ONNX; give a .onnx name"),
    (["export", "-o", "{tmp}/m.onnx", "--opset", "99"], 1, "opset 99: this torch exports opsets 17 to"),
    (["colorize", "{tmp}", "-o", "{tmp}"], 1, "images under -o {tmp} are outputs and are skipped"),
    (["train", "--images", "{tmp}", "--zoom", "0.2", "--out", "{tmp}/run"], 1, "--zoom applies to CIFAR-10"),
    (["train", "--images", "{tmp}", "--shift", "2", "--out", "{tmp}/run"], 1, "--shift applies to CIFAR-10"),
    (["train", "--zoom", "1.5"], 2, "Invalid value for '--zoom'"),
    (["train", "--images", "{tmp}", "--contrast", "0.2", "--out", "{tmp}/run"], 1, "--contrast applies to CIFAR-10"),
])
def test_user_errors_are_one_line(argv, code, expect, empty_dir, capsys):
    (empty_dir / "weights.pt").write_bytes(b"not really")
    if any("/run/model.safetensors" in a for a in argv):  # weights of a colorizer, not of a classifier
        weights.save_model(models.build("seed-lab", widths=(8, 16, 32)), empty_dir / "run" / "model.safetensors", {})
    (empty_dir / "unfinished").mkdir()
    (empty_dir / "unfinished" / "checkpoint.pt").write_bytes(b"")
    argv = [a.replace("{tmp}", str(empty_dir)) for a in argv]
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert expect.replace("{tmp}", str(empty_dir)) in line
    assert "Traceback" not in captured.out


def test_missing_dataset_is_one_line(no_data_anywhere, tmp_path, capsys):
    torch.manual_seed(0)
    run = tmp_path / "run"
    weights.save_model(models.build("seed-lab", widths=(8, 16, 32)), run / "model.safetensors", {})
    assert cli.main(["evaluate", "--model", str(run), "--grid", str(tmp_path / "g.png"), "--device", "cpu"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "CIFAR-10 not found (looked in" in line and str(no_data_anywhere / ".cache" / "autocolor") in line
    assert "could not download" in line


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "autocolor", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)


def test_subprocess_help_and_errors(tmp_path):
    ok = _run("--help")
    assert ok.returncode == 0 and "diagram" in ok.stdout and ok.stderr == ""
    bad = _run("diagram", "--model", "nope", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 1 and bad.stdout == ""
    assert "unknown model 'nope'" in _one_error_line(bad.stderr)


def test_subprocess_missing_dataset(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    res = _run("train", "--data", str(empty), "--out", str(tmp_path / "run"), "--device", "cpu")
    assert res.returncode == 1
    assert f"--data {empty}: no cifar-10-batches-py" in _one_error_line(res.stderr)


def test_diagram_of_a_bundled_name_draws_its_cards_architecture(tmp_path, monkeypatch):
    from autocolor import diagram

    drawn = []
    monkeypatch.setattr(diagram, "draw", lambda net, path: drawn.append(net) or path)
    assert cli.main(["diagram", "--model", "default", "-o", str(tmp_path / "d.png")]) == 0
    card = json.loads((weights.BUNDLED / "default.json").read_text())
    assert drawn[0].arch_name == card["architecture"] == "unet"
    assert drawn[0].arch_config["widths"] == card["config"]["widths"] and drawn[0].arch_config["classes"] == 10


def test_diagram_of_the_vivid_ensemble_draws_one_member(tmp_path, monkeypatch, capsys):
    from autocolor import diagram
    from autocolor.ensemble import VividEnsemble

    drawn = []
    monkeypatch.setattr(diagram, "draw", lambda net, path: drawn.append(net) or path)
    assert cli.main(["diagram", "--model", "vivid", "-o", str(tmp_path / "v.png")]) == 0
    assert len(drawn) == 1 and not isinstance(drawn[0], VividEnsemble) and hasattr(drawn[0], "bins")
    assert "vivid averages 3 unet-vivid and 1 unet networks; drawing one unet-vivid" in capsys.readouterr().err


def test_diagram_draws_the_model(tmp_path, capsys):
    out = tmp_path / "seed.png"
    assert cli.main(["diagram", "--model", "seed", "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == PNG
    model = models.build("seed")
    layers = trace_layers(model)
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    assert [n for n, _, _ in layers] == [n for n, _ in leaves]
    assert [d.split()[0] for _, d, _ in layers] == [type(m).__name__ for _, m in leaves]
    assert layers[0][1] == "Conv2d 1->64, 3x3" and layers[0][2] == (64, 32, 32)
    assert layers[3][1] == "MaxPool2d 2" and layers[3][2] == (64, 16, 16)
    assert [s for n, _, s in layers if n.endswith(".3")] == [(64, 16, 16), (128, 8, 8), (256, 4, 4),
                                                            (256, 8, 8), (128, 16, 16), (64, 32, 32)]
    assert layers[-1] == ("act", "Sigmoid", (3, 32, 32))
    assert model.training, "tracing must restore training mode"


def test_train_options_reach_the_run_config(monkeypatch, tmp_path):
    import autocolor.train as train_mod

    seen = []
    monkeypatch.setattr(train_mod, "train", lambda cfg, log: seen.append(cfg))
    args = ["train", "--model", "unet", "--weight-decay", "0.05", "--lr", "0.001", "--shift", "2",
            "--zoom", "0.25", "--contrast", "0.1", "--out", str(tmp_path / "run"), "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["autocolor", *args])
    assert cli.main(args) == 0
    (cfg,) = seen
    assert (cfg.model, cfg.weight_decay, cfg.lr, cfg.shift, cfg.zoom, cfg.contrast) == ("unet", 0.05, 0.001, 2, 0.25,
                                                                                       0.1)
    assert cfg.command.startswith("autocolor train --model unet --weight-decay 0.05")  # what the card records
