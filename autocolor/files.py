"""Small file helpers: atomic writes, so an interrupted run never leaves half a file; listing image files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename, so readers never see half a file."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")
    parent = _nearest_existing(path.parent)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def why_unwritable(path: Path) -> str | None:
    """Why ``path`` could not be written (a parent that is a file, or a folder without write permission), checked
    before long work so it fails at once; None when it looks writable."""
    parent = _nearest_existing(path.parent)
    if parent is None:
        return None
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in {parent} (permission denied or a read-only file system)"
    return None


def _nearest_existing(folder: Path) -> Path | None:
    """``folder`` or its nearest ancestor that exists (what a write there would find, or have to create in)."""
    return next((p for p in (folder, *folder.parents) if p.exists()), None)


RUN_MARKERS = ({"checkpoint.pt", "metrics.jsonl"}, {"model.json", "model.safetensors"})  # an autocolor run's files


def is_run_folder(names: set[str] | list[str]) -> bool:
    """Whether a folder holding ``names`` is an autocolor training run's (its sample sheets and loss curve are not
    photos): a checkpoint with its metrics, or finished weights with their card."""
    names = set(names)
    return any(markers <= names for markers in RUN_MARKERS)


def image_files(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[str]:
    """Image files under ``root``, recursively and sorted. Links are followed, but each folder and each file is
    listed once (a link loop or a second link to the same photos adds nothing); hidden names, ``exclude``'s
    folder and training runs' folders below ``root`` (e.g. runs kept inside the photos) are left out."""
    skip = Path(exclude).expanduser().resolve() if exclude is not None else None
    if skip is not None and Path(root).expanduser().resolve().is_relative_to(skip):
        skip = None  # only a folder strictly inside ``root`` is left out, never ``root`` itself
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:  # gone since os.walk listed it
            dirs[:] = []
            continue
        below_root = bool(seen_dirs)  # os.walk gives ``root`` first
        if ((st.st_dev, st.st_ino) in seen_dirs or (skip is not None and Path(folder).resolve().is_relative_to(skip))
                or (below_root and is_run_folder(files))):
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTS):
                continue
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if real not in seen_files:
                seen_files.add(real)
                found.append(path)
    return sorted(found)
