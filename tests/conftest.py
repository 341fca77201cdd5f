"""Shared fixtures: the real CIFAR-10 (read once per session), tiny fake CIFAR folders and archives."""

from __future__ import annotations

import io
import os
import pickle
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from autocolor import data as data_mod

# Two cores shared with other jobs: one intra-op thread is 10-50x faster than two spinning ones here,
# and a fixed thread count keeps CPU results bit-reproducible within the session.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("AUTOCOLOR_DATA") or REPO.parent / "shared" / "cifar10").expanduser().resolve()


def load_script(relative: str):
    """Import one of the repository's scripts (e.g. ``benchmarks/tune_vivid.py``) as a module, to call its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(relative).stem, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_data_available() -> bool:
    """True when the real CIFAR-10 python batches are present at DATA_DIR."""
    return data_mod._as_folder(DATA_DIR) is not None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The folder holding the real cifar-10-batches-py/ (skips the test when it is absent)."""
    if not real_data_available():
        pytest.skip(f"real CIFAR-10 not found at {DATA_DIR} (set AUTOCOLOR_DATA to run the data tests)")
    return DATA_DIR


@pytest.fixture(scope="session")
def splits(cifar_dir: Path) -> dict:
    """Memoised ``load_split`` on the real data, so each split's ~30-150 MB is read once per session."""
    cache: dict[str, data_mod.Split] = {}

    def get(name: str) -> data_mod.Split:
        if name not in cache:
            cache[name] = data_mod.load_split(name, cifar_dir, download=False)
        return cache[name]

    return {"get": get, "dir": cifar_dir}


def batch_bytes(n: int, seed: int, protocol: int = 4) -> bytes:
    """A valid CIFAR-style pickled batch of ``n`` random images with labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    obj = {b"batch_label": b"fake", b"labels": [i % 10 for i in range(n)],
           b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    return pickle.dumps(obj, protocol=protocol)


def make_fake_cifar(parent: Path, n: int = 10) -> Path:
    """Write a tiny but valid cifar-10-batches-py/ under ``parent`` (5 train batches, test, meta)."""
    folder = parent / data_mod.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*data_mod.TRAIN_FILES, *data_mod.TEST_FILES]):
        (folder / name).write_bytes(batch_bytes(n, seed=i))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=4))
    return folder


def make_archive(members: dict[str, bytes]) -> bytes:
    """A .tar.gz in memory holding ``members`` (name -> content) as regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def fake_cifar_archive(tmp: Path, n: int = 10) -> bytes:
    """The official archive layout (cifar-10-batches-py/...) with tiny fake batches."""
    folder = make_fake_cifar(tmp / "src", n)
    return make_archive({f"{data_mod.FOLDER}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    """Parent folder of a tiny fake cifar-10-batches-py/."""
    make_fake_cifar(tmp_path / "fake")
    return tmp_path / "fake"


def free_port() -> int:
    """A localhost TCP port with nothing listening on it now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A localhost TCP port with nothing listening on it (connections are refused at once)."""
    return free_port()


@pytest.fixture
def no_data_anywhere(tmp_path: Path, monkeypatch, closed_port: int) -> Path:
    """HOME in tmp, no $AUTOCOLOR_DATA, and downloads aimed at a closed localhost port. Returns HOME."""
    import functools

    from autocolor import download

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(data_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(data_mod, "download_cifar10", functools.partial(
        download.download_cifar10, url=f"http://127.0.0.1:{closed_port}/cifar-10-python.tar.gz", progress=False))
    return home
