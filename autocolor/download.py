"""Fetch and unpack the official CIFAR-10 archive: checksum-verified, atomic, traversal-safe."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from autocolor.errors import AutocolorError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
WORK_PREFIX = ".autocolor-dl-"


def _fetch(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``dest`` with a progress bar; raises on short reads."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            with tqdm(total=total or None, unit="B", unit_scale=True, desc="CIFAR-10",
                      disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            if total and done != total:
                raise AutocolorError(f"download of {url} was cut short ({done} of {total} bytes)")
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        raise AutocolorError(f"could not download {url}: {exc}") from None


def md5sum(path: Path) -> str:
    """Hex MD5 of a file (``hashlib.file_digest``, read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract regular files and folders only, refusing absolute paths, '..' and links."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest.resolve()):
                raise AutocolorError(f"refusing unsafe archive member {member.name!r} in {archive}")
        tar.extractall(dest, filter="data")


def _missing(folder: Path) -> list[str]:
    """The batch files a ``cifar-10-batches-py`` folder lacks."""
    return [n for n in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch") if not (folder / n).is_file()]


def _remove_stale(root: Path, max_age_s: float = 86400) -> None:
    """Delete work folders of downloads killed over a day ago (a killed process cannot clean up after itself)."""
    cutoff = time.time() - max_age_s
    for old in root.glob(f"{WORK_PREFIX}*"):
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def download_cifar10(root: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5,
                     progress: bool = True) -> Path:
    """Download, verify and unpack CIFAR-10 into ``root/cifar-10-batches-py``; return that folder.

    Work happens in a temporary folder inside ``root``; the final folder appears only by an atomic
    rename once everything checked out, so an interrupted run never leaves something that looks like data.
    """
    root = Path(root).expanduser()
    final = root / FOLDER
    if final.exists():
        missing = _missing(final)
        if not missing:
            return final  # e.g. another process (a torchrun rank) finished the same download first
        raise AutocolorError(f"{final} is incomplete (no {', '.join(missing)}); delete it and run again "
                             "to download CIFAR-10 afresh")
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=root))
    try:
        archive = work / "cifar-10-python.tar.gz"
        _fetch(url, archive, progress)
        got = md5sum(archive)
        if got != md5:
            raise AutocolorError(f"checksum mismatch for {url}: md5 {got}, expected {md5}")
        unpack = work / "unpacked"
        unpack.mkdir()
        try:
            _safe_extract(archive, unpack)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise AutocolorError(f"corrupt archive from {url}: {exc}") from None
        if not (unpack / FOLDER).is_dir():
            raise AutocolorError(f"archive from {url} has no {FOLDER}/ folder")
        try:
            os.replace(unpack / FOLDER, final)
        except OSError as exc:
            if final.is_dir() and not _missing(final):
                return final  # another process put a complete copy there meanwhile
            raise AutocolorError(f"could not move the unpacked CIFAR-10 to {final}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
