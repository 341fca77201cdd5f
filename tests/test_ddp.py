"""DistributedDataParallel under torchrun on CPU (gloo, 2 processes): identical ranks, 1 vs 2 processes, resume.

Each run is a real ``torchrun --standalone`` launch of ``autocolor train`` on a few hundred CIFAR-10 images.
The exactness tests use a tiny BatchNorm-free model (registered by a small launcher script), because on CPU
BatchNorm statistics are per rank (PyTorch's SyncBatchNorm needs GPUs): without BatchNorm, DDP with a global
batch of 64 split 2 x 32 must follow the same trajectory as one process with batch 64, up to float
summation order. The BatchNorm model (seed-lab) is checked for identical weights on every rank.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, real_data_available
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(not real_data_available(), reason=f"real CIFAR-10 not found at {DATA_DIR}")

LAUNCHER = '''
import sys
from torch import nn
from autocolor.cli import main
from autocolor.nets import ColorNet
from autocolor.registry import register


class Tiny(ColorNet):
    """Two 3x3 convolutions, no BatchNorm: DDP must reproduce single-process training exactly."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1), nn.Tanh())

    def forward(self, L):
        return self.body(L)


register("test-tiny")(Tiny)
sys.exit(main(sys.argv[1:]))
'''

TINY = ["--model", "test-tiny", "--max-images", "256", "--batch-size", "64", "--epochs", "2", "--lr", "1e-2",
        "--precision", "fp32"]
# 1 vs 2 processes, no BatchNorm: largest relative weight difference allowed (measured 1.3e-6: float summation order)
TOLERANCE = 1e-5


def _env(dump: Path | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "AUTOCOLOR_DATA": str(DATA_DIR),
           "PYTHONFAULTHANDLER": "1"}  # a hung run prints every thread's stack when _run aborts it
    env.pop("AUTOCOLOR_DDP_DUMP", None)
    if dump is not None:
        env["AUTOCOLOR_DDP_DUMP"] = str(dump)
    return env


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, children first (from /proc; just ``root`` where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found[::-1]


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _run(args: list[str], nproc: int, script: Path | None = None, dump: Path | None = None,
         expect: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node=N`` (or plain python for N = 0) of ``autocolor train ARGS``.

    A run past ``timeout`` seconds is aborted with its ranks (nothing is left behind) and the test fails with
    every process's Python stacks, which the fault handler prints on SIGABRT."""
    target = [str(script)] if script else ["-m", "autocolor"]
    launcher = [sys.executable] if nproc == 0 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc-per-node={nproc}"]
    cmd = [*launcher, *target, "train", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(dump),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = _process_tree(proc.pid)  # torchrun starts each rank in a session of its own
        _signal_all(tree, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_all(tree, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"hung for {timeout} s and was aborted; its output and stacks:\n{out[-3000:]}\n{err[-8000:]}")
    res = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    assert res.returncode == expect, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(path)).items()}


def _max_rel_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-12)) for k in a)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The tiny model trained for 2 epochs by one process and by two (global batch 64 both times)."""
    root = tmp_path_factory.mktemp("ddp")
    script = root / "launch.py"
    script.write_text(LAUNCHER)
    one = _run([*TINY, "--out", str(root / "one")], 0, script)
    two = _run([*TINY, "--out", str(root / "two")], 2, script, dump=root / "dump")
    return {"root": root, "script": script, "one": one, "two": two}


def test_two_processes_match_one_process(tiny_runs):
    root = tiny_runs["root"]
    assert "global batch 64 = 2 processes x 32" in tiny_runs["two"].stdout
    assert tiny_runs["two"].stdout.count("training test-tiny") == 1  # rank 0 alone logs
    one, two = _weights(root / "one" / "model.safetensors"), _weights(root / "two" / "model.safetensors")
    assert not any(k.startswith("module.") for k in two)
    assert _max_rel_diff(one, two) < TOLERANCE
    m1, m2 = ([json.loads(line) for line in (root / r / "metrics.jsonl").read_text().splitlines()]
              for r in ("one", "two"))
    assert len(m1) == len(m2) == 2
    for a, b in zip(m1, m2, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)  # all-reduced over both ranks' halves
    card = json.loads((root / "two" / "model.json").read_text())["training"]
    assert card["processes"] == 2 and card["batch_size"] == 64 and card["batch_size_is_global"]
    assert "torchrun --standalone --nproc-per-node=2 -m autocolor train " in card["command"]  # replayable as run
    ranks = [torch.load(root / "dump" / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_resume_under_ddp_continues_exactly(tiny_runs):
    root, script = tiny_runs["root"], tiny_runs["script"]
    out = root / "resumed"
    first = _run([*TINY, "--out", str(out), "--stop-after", "1"], 2, script)
    assert "stopping after 1 epoch" in first.stdout and not (out / "model.safetensors").exists()
    second = _run([*TINY, "--out", str(out), "--resume"], 2, script, dump=root / "dump-resumed")
    assert "resuming" in second.stdout and "epoch 2/2" in second.stdout
    assert _max_rel_diff(_weights(out / "model.safetensors"), _weights(root / "two" / "model.safetensors")) < 1e-6
    ranks = [torch.load(root / "dump-resumed" / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_batchnorm_model_ends_identical_on_every_rank(tmp_path):
    out = tmp_path / "seed-lab"
    res = _run(["--model", "seed-lab", "--max-images", "128", "--batch-size", "32", "--epochs", "1",
                "--precision", "fp32", "--out", str(out)], 2, dump=tmp_path / "dump")
    assert "global batch 32 = 2 processes x 16" in res.stdout
    ranks = [torch.load(tmp_path / "dump" / f"rank{r}.pt") for r in (0, 1)]
    assert any("running_mean" in k for k in ranks[0])
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # weights and BatchNorm buffers
    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(saved[k].float(), ranks[0][k].float()) for k in saved)


def test_image_folder_under_ddp(tmp_path, tiny_runs):
    from test_folders import make_folder

    root = make_folder(tmp_path / "photos", n=24)
    out = tmp_path / "run"
    res = _run(["--model", "test-tiny", "--images", str(root), "--image-size", "32", "--val-fraction", "0.2",
                "--batch-size", "8", "--epochs", "1", "--workers", "1", "--out", str(out)], 2,
               tiny_runs["script"], dump=tmp_path / "dump")
    assert res.stdout.count("skipped 2 greyscale") == 1 and "corrupt.jpg" in res.stdout
    assert "19 images of 32x32" in res.stdout and "global batch 8 = 2 processes x 4" in res.stdout
    ranks = [torch.load(tmp_path / "dump" / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert json.loads((out / "model.json").read_text())["image_size"] == 32


def test_global_batch_must_split_evenly(monkeypatch, tmp_path, capsys):
    from autocolor.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; refused before joining any process group
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--batch-size", "63", "--out", str(tmp_path / "odd")]) == 1
    assert "must be divisible by the 2 processes" in capsys.readouterr().err


def test_other_ranks_leave_shared_errors_to_rank_zero(monkeypatch, tmp_path, capsys):
    from autocolor.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # every rank hits a bad flag alike: rank 0 prints it, rank 1 only exits
    assert main(["train", "--batch-size", "63", "--out", str(tmp_path / "odd")]) == 1
    assert main(["train", "--no-such-flag"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--no-such-flag"]) == 2
    assert capsys.readouterr().err.startswith("autocolor: error: No such option")


def test_rank_local_errors_name_their_rank(monkeypatch, capsys):
    from autocolor import cli
    from autocolor.errors import AutocolorError

    def fail(exc):
        def command(*args, **kwargs):
            raise exc
        return command

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(cli.cli, "main", fail(AutocolorError("its GPU is missing", rank_local=True)))
    assert cli.main([]) == 1
    monkeypatch.setattr(cli.cli, "main", fail(PermissionError(13, "Permission denied", "/data/x")))
    assert cli.main([]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "autocolor: error (rank 1): its GPU is missing",
        "autocolor: error (rank 1): [Errno 13] Permission denied: '/data/x'"]


def test_torchrun_prints_a_bad_flag_once():
    res = _run(["--no-such-flag"], 2, expect=1)  # torchrun's own exit status for a failed rank
    assert res.stderr.count("autocolor: error: No such option") == 1, res.stderr


def test_a_rank_without_cuda_says_so(monkeypatch, tmp_path, capsys):
    from autocolor.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # e.g. a second machine without a GPU: only it knows
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == ("autocolor: error (rank 1): --device cuda asked for, but no CUDA GPU is "
                                       "available\n")
