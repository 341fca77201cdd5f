"""The scripts and benchmarks outside the ``autocolor`` CLI: a user's mistake ends in one line, never a traceback."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from conftest import REPO, make_fake_cifar

from autocolor.errors import AutocolorError, run_main

MISSING = "no-such-run"


def _run(script: str, *args: str, cwd=REPO) -> subprocess.CompletedProcess:
    """``python REPO/script ARGS...`` in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


def _one_line_error(res: subprocess.CompletedProcess, prog: str, *words: str) -> str:
    """The process failed with exit status 1 and a single ``PROG: error: ...`` line on stderr."""
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 1, (res.returncode, res.stderr)
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"{prog}: error: "), line
    for word in words:
        assert word in line
    return line


# run_main itself -------------------------------------------------------------------------------------------------


def test_run_main_turns_user_errors_into_one_line(capsys):
    def bad():
        raise AutocolorError("no trained model 'x'")

    with pytest.raises(SystemExit) as exc:
        run_main(bad, "tool.py")
    assert exc.value.code == 1
    assert capsys.readouterr().err == "tool.py: error: no trained model 'x'\n"

    def missing_file():
        open("/nonexistent/folder/file.txt")

    with pytest.raises(SystemExit) as exc:
        run_main(missing_file, "tool.py")
    assert exc.value.code == 1
    assert capsys.readouterr().err.startswith("tool.py: error: [Errno 2] No such file or directory")


def test_run_main_under_torchrun_prints_shared_errors_on_rank_zero_only(capsys, monkeypatch):
    def bad():
        raise AutocolorError("no trained model 'x'")

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as exc:
        run_main(bad, "tool.py")
    assert exc.value.code == 1 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit):
        run_main(bad, "tool.py")
    assert capsys.readouterr().err == "tool.py: error: no trained model 'x'\n"


def test_run_main_interrupt_exits_130_and_success_returns(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        run_main(interrupted, "tool.py")
    assert exc.value.code == 130
    assert "tool.py: interrupted" in capsys.readouterr().err
    calls = []
    assert run_main(lambda: calls.append(1)) is None and calls == [1]
    monkeypatch.setattr(sys, "argv", ["/some/where/script.py"])
    with pytest.raises(SystemExit):
        run_main(lambda: (_ for _ in ()).throw(AutocolorError("boom")))
    assert capsys.readouterr().err == "script.py: error: boom\n"  # prog defaults to the script's name


def test_run_main_leaves_bugs_alone():
    def bug():
        raise ValueError("a programming error keeps its traceback")

    with pytest.raises(ValueError):
        run_main(bug, "tool.py")


def _main_block_calls(path) -> list[str]:
    """Names of the functions called in ``path``'s ``if __name__ == "__main__":`` block."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return [ast.unparse(n.func) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    return []


# keras_seed.py is left out: it runs in the separate Keras venv, which has no autocolor
@pytest.mark.parametrize("path", sorted([*(p for p in (REPO / "benchmarks").glob("*.py") if p.name != "keras_seed.py"),
                                         *(REPO / "scripts").glob("*.py"), REPO / "autocolor" / "classifier.py"]),
                         ids=lambda p: p.name)
def test_every_script_main_goes_through_run_main(path):
    calls = _main_block_calls(path)
    if path.name == "common.py":
        assert calls == []  # a library, not a script
    else:
        assert calls and calls[0] == "run_main", calls


# scripts/ --------------------------------------------------------------------------------------------------------


def test_halve_help_exits_0_and_bad_usage_fails():
    res = _run("scripts/halve.py", "--help")
    assert res.returncode == 0 and "python scripts/halve.py NAME" in res.stdout and not res.stderr
    assert _run("scripts/halve.py", "-h").returncode == 0
    res = _run("scripts/halve.py")
    assert res.returncode == 1 and "give at least one NAME" in res.stderr and "Traceback" not in res.stderr
    _one_line_error(_run("scripts/halve.py", MISSING), "halve.py", MISSING)


def test_bundle_and_ensemble_name_a_missing_run_in_one_line():
    _one_line_error(_run("scripts/bundle.py", MISSING, "x"), "bundle.py", MISSING)
    _one_line_error(_run("scripts/ensemble.py", "out.safetensors", "--vivid", MISSING), "ensemble.py", MISSING)


@pytest.mark.parametrize("flag, value, why", [("--temperature", "0", "> 0"), ("--temperature", "-1", "> 0"),
                                              ("--boost", "-3", ">= 0"), ("--fidelity-weight", "1.5", "[0, 1]"),
                                              ("--temperature", "inf", "> 0"), ("--boost", "1e400", ">= 0")])
def test_ensemble_refuses_what_the_cli_refuses(flag, value, why, tmp_path):
    res = _run("scripts/ensemble.py", str(tmp_path / "e.safetensors"), "--vivid", "vivid", f"{flag}={value}")
    assert res.returncode == 2 and f"argument {flag}" in res.stderr and why in res.stderr, res.stderr
    assert not (tmp_path / "e.safetensors").exists()


# benchmarks/ -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["tta_default.py", MISSING], ["ensemble.py", MISSING],
                                  ["colorize_size.py", MISSING], ["ssim_references.py", "--model", MISSING]],
                         ids=lambda a: a[0])
def test_benchmarks_name_a_missing_run_in_one_line(args, fake_cifar):
    extra = [] if args[0] == "colorize_size.py" else ["--data", str(fake_cifar)]
    _one_line_error(_run(f"benchmarks/{args[0]}", *args[1:], *extra), args[0], MISSING)


def test_tune_vivid_says_it_needs_a_vivid_model():
    line = _one_line_error(_run("benchmarks/tune_vivid.py", "default"), "tune_vivid.py",
                           "needs a classification (vivid) model")
    assert "boost_centred" not in line


@pytest.mark.parametrize("args", [["semantic_ci.py", "default", "--resamples", "0"],
                                  ["ensemble.py", "default", "--max-images", "0"],
                                  ["make_subset.py", "--out", "x", "--train", "0"],
                                  ["make_subset.py", "--out", "x", "--test", "-1"]], ids=lambda a: " ".join(a[:4:2]))
def test_benchmark_counts_must_be_positive(args, tmp_path):
    res = _run(f"benchmarks/{args[0]}", *args[1:], cwd=tmp_path)
    assert res.returncode == 2 and "must be at least 1" in res.stderr, res.stderr
    assert not (tmp_path / "x").exists()


def test_make_subset_refuses_to_overwrite_its_source(tmp_path):
    folder = make_fake_cifar(tmp_path / "data", n=10)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for data, out in [(tmp_path / "data", tmp_path / "data"), (folder, tmp_path / "data"), (folder, folder),
                      (tmp_path / "data", f"{tmp_path}/data/./")]:
        res = _run("benchmarks/make_subset.py", "--data", str(data), "--out", str(out), "--train", "3")
        _one_line_error(res, "make_subset.py", "is the source data")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # untouched
    res = _run("benchmarks/make_subset.py", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "small"),
               "--train", "3", "--test", "2")
    assert res.returncode == 0, res.stderr
    from autocolor.data import load_split

    assert len(load_split("trainval", tmp_path / "small", download=False)) == 15
    assert len(load_split("test", tmp_path / "small", download=False)) == 2
