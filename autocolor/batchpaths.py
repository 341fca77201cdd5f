"""Which files a ``colorize`` batch reads and where each result goes: files, folders and globs expanded into a
list of photos, and one output path per photo (``-N`` names, kept sub-folders, never an input's own path)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from autocolor.files import IMAGE_EXTS, image_files

GLOB_CHARS = set("*?[")


def expand_inputs(specs: list[str], exclude: str | os.PathLike | None = None,
                  subfolders: dict[Path, Path] | None = None) -> tuple[list[Path], list[str]]:
    """Files, folders (recursive, image suffixes only) and globs -> (unique files in order, error lines).
    ``subfolders``, when given, is filled with each file found in a folder argument -> its sub-folder there
    (``Path()`` at the top), for ``plan_outputs`` to keep a tree."""
    out: list[Path] = []
    errors: list[str] = []
    seen: set[Path] = set()
    skip = Path(exclude).resolve() if exclude is not None else None
    found_under: dict[Path, Path] = {}  # file -> the folder argument (or a glob's fixed folder) it was found in
    bases: dict[Path, None] = {}  # every such folder in argument order, also those whose files all came in through
    # another argument

    def add(p: Path, from_folder: bool, base: Path | None = None) -> None:
        if p.is_dir():  # recursive, following links once (as training folders are scanned), hidden names left out
            bases.setdefault(base if base is not None else p)
            for f in sorted(image_files(p, skip), key=lambda f: Path(f).parts):  # folder by folder, as before
                add(Path(f), True, base if base is not None else p)
            return
        r = p.resolve()
        if from_folder and skip is not None and r.is_relative_to(skip) and skip.is_relative_to(base.resolve()):
            return  # found under OUTDIR, which is the folder argument or inside it: an output, not a photo
        if r not in seen:
            seen.add(r)
            out.append(p)
            if base is not None:
                found_under[p] = base

    for spec in specs:
        p = Path(spec).expanduser()
        if p.exists() or p.is_symlink():
            add(p, False)
        elif GLOB_CHARS & set(spec):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(spec), recursive=True))]
            matches = [m for m in matches if m.is_dir() or m.suffix.lower() in IMAGE_EXTS]
            if not matches:
                errors.append(f"{spec}: no image files match")
                continue  # and its folder does not take part in --keep-folders' tree
            bases.setdefault(_glob_root(spec))
            for m in matches:
                add(m, True, _glob_root(spec))
        else:
            errors.append(f"{spec}: no such file or folder")
    if subfolders is not None:
        subfolders.update(_subfolders(found_under, bases))
    return out, errors


def _glob_root(spec: str) -> Path:
    """The folder a glob's matches are measured from: its leading components without wildcards."""
    fixed = []
    for part in Path(os.path.expanduser(spec)).parts:
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def _subfolders(found_under: dict[Path, Path], bases: dict[Path, None]) -> dict[Path, Path]:
    """Each file's sub-folder for ``--keep-folders``: measured on real paths from the outermost folder argument
    that holds it (a link to a sibling folder keeps that folder's name; nested arguments do not re-root files);
    under several such roots, each root's own name comes first (``-N`` when two roots share one), so same-named
    sub-folders do not merge."""
    ordered = list(dict.fromkeys(b.resolve() for b in bases))  # argument order
    outermost = [b for b in ordered if not any(b != a and b.is_relative_to(a) for a in ordered)]
    placed = {}  # file -> (its root, its sub-folder there)
    for p, base in found_under.items():
        real = p.resolve()
        holder = next((b for b in outermost if real.is_relative_to(b)), None)
        if holder is None:  # reached through a link that leads outside every root: where it was found
            holder = next(b for b in outermost if base.resolve().is_relative_to(b))
            placed[p] = holder, p.parent.relative_to(base)
        else:
            placed[p] = holder, real.parent.relative_to(holder)
    holding = [b for b in outermost if any(h == b for h, _ in placed.values())]
    names, used = {}, set()
    for b in holding:  # in argument order: a second photos/ (with photos in it) becomes photos-1/
        name, n = b.name or "root", 0
        while name.lower() in used:
            n += 1
            name = f"{b.name or 'root'}-{n}"
        names[b] = name
        used.add(name.lower())
    named = len(holding) > 1
    return {p: Path(names[holder]) / sub if named else sub for p, (holder, sub) in placed.items()}


def plan_outputs(inputs: list[Path], outdir: Path, fmt: str,
                 subfolders: dict[Path, Path] | None = None) -> list[Path]:
    """OUTDIR/<stem>.<fmt> per input (OUTDIR/<sub-folder>/<stem>.<fmt> for inputs in ``subfolders``, which keeps
    a folder's tree); repeated names get ``-1``, ``-2``... so no two inputs share an output, no output is one
    of the inputs (``photo.jpg`` and ``photo.png`` colorized into their own folder), and no output file takes the
    name of a kept sub-folder or of a folder already there."""
    folders = [outdir / (subfolders or {}).get(p, Path()) for p in inputs]
    used = {str(parent).lower() for f in folders for parent in (f, *f.parents)}  # names the kept tree needs
    inputs_at = {p.resolve() for p in inputs}
    outs = []
    for p, folder in zip(inputs, folders, strict=True):
        stem, n = p.stem or "image", 0
        name = f"{stem}.{fmt}"
        while (str(folder / name).lower() in used or (folder / name).resolve() in inputs_at
               or (folder / name).is_dir()):
            n += 1
            name = f"{stem}-{n}.{fmt}"
        used.add(str(folder / name).lower())
        outs.append(folder / name)
    return outs
