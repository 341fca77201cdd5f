"""benchmarks/run_all.py renders what each speed script measured, with where and when, from its JSON."""

from __future__ import annotations

import json
import os

import pytest
from conftest import REPO, load_script

from autocolor.errors import AutocolorError


def _results() -> list[dict]:
    folder = REPO / "benchmarks" / "results"
    return [json.loads((folder / f"{name}.json").read_text())
            for name in ("train_throughput", "infer_throughput", "photo_1mp")]


def test_run_all_says_where_each_table_was_measured():
    bench = load_script("benchmarks/run_all.py")
    train, infer, photo = _results()
    train = {**bench.stamped(train, "2026-01-02 03:04 UTC", "python x.py"), "machine": "Machine A", "load": "load 1"}
    assert train["command"] == _results()[0]["command"]  # the script's own whole-command figures are kept
    photo = {**photo, "machine": "Machine B", "load": "load 2"}
    photo.pop("measured_at", None)
    text = bench.markdown(train, infer, photo, command="python benchmarks/run_all.py --only photo_1mp",
                          started="2026-02-03 04:05 UTC", load_before="x", load_after="y")
    assert "Training: Measured 2026-01-02 03:04 UTC on Machine A, load 1." in text
    assert "Measured date not recorded on Machine B, load 2." in text
    assert "Rendered by `python benchmarks/run_all.py --only photo_1mp` (2026-02-03 04:05 UTC" in text
    assert photo["seconds"]  # the loop below checks something
    for name in photo["seconds"]:
        assert f"| {name} | {photo['seconds'][name]['total']:.3f} |" in text


def test_gpu_batch_gain_is_computed_from_the_rows(tmp_path):
    bench = load_script("benchmarks/run_all.py")
    rows = [{"model": "seed", "what": w, "precision": p, "batch": b, "images_per_s": ips}
            for w, p, b, ips in [("train", "fp32", 128, 100.0), ("train", "fp32", 1024, 370.0),
                                 ("infer", "bf16", 128, 200.0), ("infer", "bf16", 1024, 1080.0)]]
    gpu = {"device": "GPU X", "torch": "t", "cuda": "c", "rounds": 5, "gemm_bf16_tflops": 1.0, "rows": rows}
    (tmp_path / "gpu_throughput.json").write_text(json.dumps(gpu))
    text = "\n".join(bench.gpu_markdown(tmp_path))
    assert "batch 1024 runs 3.7-5.4x more images per second" in text


def test_run_all_names_a_failed_script_instead_of_a_traceback(tmp_path, monkeypatch):
    bench = load_script("benchmarks/run_all.py")
    (tmp_path / "fails.py").write_text("import sys\nsys.exit('fails.py: error: no data')\n")
    monkeypatch.setattr(bench, "HERE", tmp_path)
    with pytest.raises(AutocolorError, match=r"^fails\.py failed \(exit status 1\); nothing was rendered$"):
        bench.run("fails.py", quick=True, folder=tmp_path / "out", env=dict(os.environ), threads=None)


def test_quality_side_table_at_a_fixed_precision_leaves_cards_and_grids_alone(tmp_path, fake_cifar, monkeypatch):
    from autocolor.weights import BUNDLED

    bench = load_script("benchmarks/quality.py")
    monkeypatch.setattr(bench, "ORDER", ["seed"])
    monkeypatch.setattr(bench, "bundled_names", lambda: ["seed"])
    card = (BUNDLED / "seed.json").read_bytes()
    monkeypatch.chdir(tmp_path)  # the grids and plot would land in ./docs
    out = tmp_path / "q.md"
    monkeypatch.setattr("sys.argv", ["quality.py", "--precision", "fp32", "--max-images", "8", "--data",
                                     str(fake_cifar), "--out", str(out)])
    bench.main()
    text = out.read_text()
    assert "Inference precision: fp32 (`--precision fp32`)" in text and "quality.py --precision fp32`" in text
    assert text.count("| `seed` |") == 1 and "| grey input |" in text
    assert (BUNDLED / "seed.json").read_bytes() == card and not (tmp_path / "docs").exists()
