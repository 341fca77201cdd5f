"""The semantic-accuracy classifier: which images it trains on, and scoring with another one than the bundled."""

from __future__ import annotations

import json

import pytest
import torch

from autocolor import classifier as clf_mod
from autocolor import models, weights
from autocolor.data import Split, load_split
from autocolor.errors import AutocolorError
from autocolor.evaluate import evaluate


def _tiny_split(n: int = 64) -> Split:
    gen = torch.Generator().manual_seed(0)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
                 torch.randint(0, 10, (n,), generator=gen))


@pytest.mark.parametrize("split, count", [
    ("train", "CIFAR-10 training set less the 5,000 validation images (64 images)"),
    ("trainval", "CIFAR-10 training set (64 images)")])
def test_train_split_is_what_it_trains_on_and_what_its_card_says(split, count, tmp_path, monkeypatch):
    asked = []

    def fake_load_split(name, data=None):
        asked.append(name)
        return _tiny_split()

    monkeypatch.setattr(clf_mod, "load_split", fake_load_split)
    out = tmp_path / "c.safetensors"
    card = clf_mod.train_classifier(1, out, batch_size=32, split=split, device="cpu")
    assert asked == [split, "test"]
    assert card["training"]["data"] == count  # the images it really had, not the full CIFAR-10's
    assert json.loads(out.with_suffix(".json").read_text())["training"]["data"] == card["training"]["data"]
    assert clf_mod.load_classifier(out) is not None


def test_card_data_of_the_full_dataset_is_unchanged():
    assert clf_mod.data_text("trainval", 50_000) == "CIFAR-10 training set (50,000 images)"
    assert clf_mod.data_text("train", 45_000) == ("CIFAR-10 training set less the 5,000 validation images "
                                                  "(45,000 images)")


def _no_training(monkeypatch):
    """Make any attempt to load data (and so to train) fail the test: the refusals must come first."""
    def refuse(*a, **k):
        raise AssertionError("loaded the data before checking the arguments")

    monkeypatch.setattr(clf_mod, "load_split", refuse)


@pytest.mark.parametrize("out, why", [("folder", "is a folder"), ("c.pt", "give a .safetensors file name"),
                                      ("afile/c.safetensors", "afile is a file, not a folder"),
                                      ("afile/sub/c.safetensors", "afile is a file, not a folder"),
                                      ("card/c.safetensors", "c.json is a folder")])
def test_out_is_checked_before_training(out, why, tmp_path, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "card" / "c.json").mkdir(parents=True)
    with pytest.raises(AutocolorError, match=why):
        clf_mod.train_classifier(1, tmp_path / out, device="cpu")


@pytest.mark.parametrize("epochs", ["0", "-1", "x"])
def test_epochs_must_be_positive_on_the_command_line(epochs, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        clf_mod.main(["--epochs", epochs, "--out", str(tmp_path / "c.safetensors")])
    assert exc.value.code == 2 and "argument --epochs" in capsys.readouterr().err
    with pytest.raises(AutocolorError, match="at least 1 epoch"):
        clf_mod.train_classifier(int(epochs) if epochs != "x" else 0, tmp_path / "c.safetensors")


def test_fewer_images_than_a_batch_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clf_mod, "load_split", lambda name, data=None: _tiny_split(16))
    with pytest.raises(AutocolorError, match="16 images, fewer than one batch of 32"):
        clf_mod.train_classifier(1, tmp_path / "c.safetensors", batch_size=32, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_weights_are_written_atomically(tmp_path, monkeypatch):
    """A failed save leaves the older weights whole and no temp file; a good one replaces them."""
    monkeypatch.setattr(clf_mod, "load_split", lambda name, data=None: _tiny_split(32))
    out = tmp_path / "c.safetensors"
    out.write_bytes(b"older weights")

    import autocolor.files as files_mod

    class DiskFull:  # the temp file gets half its bytes, then the disk is full
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:9])
            raise OSError("No space left on device")

    real_fdopen = files_mod.os.fdopen
    monkeypatch.setattr(files_mod.os, "fdopen", lambda fd, mode: DiskFull(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        clf_mod.train_classifier(1, out, batch_size=32, device="cpu", overwrite=True)
    assert out.read_bytes() == b"older weights" and sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    monkeypatch.setattr(files_mod.os, "fdopen", real_fdopen)
    with pytest.raises(AutocolorError, match="already exists"):  # checked before training, without --overwrite
        clf_mod.train_classifier(1, out, batch_size=32, device="cpu")
    assert out.read_bytes() == b"older weights"
    card = tmp_path / "lone.json"
    card.write_text("{}")  # a card alone is not replaced either
    with pytest.raises(AutocolorError, match="it or its card already exists"):
        clf_mod.train_classifier(1, tmp_path / "lone.safetensors", batch_size=32, device="cpu")
    card.unlink()
    clf_mod.train_classifier(1, out, batch_size=32, device="cpu", overwrite=True)
    assert clf_mod.load_classifier(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.safetensors"]


def test_module_main_reports_a_user_error_in_one_line(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "autocolor.classifier", "--data", str(tmp_path / "nothere"),
                          "--out", str(tmp_path / "c.safetensors")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == f"python -m autocolor.classifier: error: --data {tmp_path / 'nothere'}: no such folder"
    res = subprocess.run([sys.executable, "-m", "autocolor.classifier", "--epochs", "0"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "argument --epochs: must be at least 1" in res.stderr
    bundled = clf_mod.WEIGHTS.read_bytes()
    res = subprocess.run([sys.executable, "-m", "autocolor.classifier", "--out", str(clf_mod.WEIGHTS)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "it is the bundled classifier" in res.stderr, res.stderr
    assert clf_mod.WEIGHTS.read_bytes() == bundled


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        clf_mod.train_classifier(1, tmp_path / "c.safetensors", split="val")


def _other_classifier(tmp_path):
    """An untrained small classifier saved with its card: scores differ from the bundled one's."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path / "other.safetensors"
    save_file(clf_mod.Classifier((8, 16, 32)).eval().state_dict(), str(path))
    path.with_suffix(".json").write_text(json.dumps({"architecture": "classifier", "widths": [8, 16, 32]}))
    return path


def test_evaluate_scores_semantic_accuracy_with_the_given_classifier(tmp_path, cifar_dir):
    path = _other_classifier(tmp_path)
    model = weights.save_model(models.build("seed-lab", widths=(8, 16, 32)).eval(), tmp_path / "m.safetensors",
                               {"name": "m"})
    kw = {"max_images": 64, "data": str(cifar_dir), "device": "cpu", "progress": False}
    res = evaluate(model, classifier=path, **kw)
    test = load_split("test", str(cifar_dir))
    expected = clf_mod.accuracy(clf_mod.load_classifier(path), test.images[:64], test.labels[:64])
    assert res["ground_truth"]["semantic_accuracy"] == round(expected, 4)
    assert res["ground_truth"]["semantic_accuracy"] != evaluate(model, **kw)["ground_truth"]["semantic_accuracy"]
    with pytest.raises(AutocolorError, match="no classifier at"):
        evaluate(model, classifier=tmp_path / "missing.safetensors", **kw)


def test_semantic_ci_scores_with_the_given_classifier(tmp_path, fake_cifar, monkeypatch, capsys):
    """benchmarks/semantic_ci.py --classifier: same figure as evaluate with that classifier; missing file refused."""
    from conftest import load_script

    bench = load_script("benchmarks/semantic_ci.py")
    path = _other_classifier(tmp_path)
    model = weights.save_model(models.build("seed-lab", widths=(8, 16, 32)).eval(), tmp_path / "m.safetensors",
                               {"name": "m"})
    argv = ["semantic_ci.py", str(model), "--split", "val", "--resamples", "50", "--data", str(fake_cifar)]
    monkeypatch.setattr("sys.argv", [*argv, "--classifier", str(path)])
    bench.main()
    out = capsys.readouterr().out
    row = out.strip().splitlines()[-1].split("|")
    ref = evaluate(model, split="val", data=str(fake_cifar), device="cpu", progress=False, classifier=path)
    assert str(path) in out.splitlines()[0]
    assert float(row[4]) == round(ref["semantic_accuracy"], 4)
    assert float(row[6]) == round(ref["ground_truth"]["semantic_accuracy"], 4)
    bundled = evaluate(model, split="val", data=str(fake_cifar), device="cpu", progress=False)
    assert float(row[5]) == round(ref["grey_baseline"]["semantic_accuracy"], 4)
    assert float(row[5]) != round(bundled["grey_baseline"]["semantic_accuracy"], 4)  # the flag changed the instrument
    monkeypatch.setattr("sys.argv", [*argv, "--classifier", str(tmp_path / "missing.safetensors")])
    with pytest.raises(AutocolorError, match="no classifier at"):
        bench.main()
