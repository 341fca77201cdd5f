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


@pytest.mark.parametrize("split, count", [("train", "45,000"), ("trainval", "50,000")])
def test_train_split_is_what_it_trains_on_and_what_its_card_says(split, count, tmp_path, monkeypatch):
    asked = []

    def fake_load_split(name, data=None):
        asked.append(name)
        return _tiny_split()

    monkeypatch.setattr(clf_mod, "load_split", fake_load_split)
    out = tmp_path / "c.safetensors"
    card = clf_mod.train_classifier(1, out, batch_size=32, split=split, device="cpu")
    assert asked == [split, "test"]
    assert count in card["training"]["data"]
    assert json.loads(out.with_suffix(".json").read_text())["training"]["data"] == card["training"]["data"]
    assert clf_mod.load_classifier(out) is not None


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
    with pytest.raises(SystemExit, match="no classifier at"):
        bench.main()
