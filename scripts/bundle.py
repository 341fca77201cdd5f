"""Copy a finished training run into the package as a bundled model: autocolor/bundled/NAME.{safetensors,json}.

Usage: python scripts/bundle.py RUN_DIR NAME [--heldout RUN_DIR2] [--overwrite]
NAME is a plain name (letters, digits, - and _); a bundled model of that name is replaced only with --overwrite.
A ``--final-fit`` run (trained on the validation images too) has no honest validation curve of its own;
--heldout names the run of the same recipe on the 45,000 training images whose validation history the
card then carries (``training.heldout_run``) for the time-to-quality plot.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from autocolor.errors import AutocolorError, run_main
from autocolor.train import _replay_command
from autocolor.weights import BUNDLED, load_card, resolve, write_card


def _history(run_weights: Path) -> list[dict]:
    metrics = run_weights.parent / "metrics.jsonl"
    return [json.loads(line) for line in metrics.read_text().splitlines() if line] if metrics.is_file() else []


def bundle(run: str, name: str, heldout: str | None = None, overwrite: bool = False) -> Path:
    """Copy ``run``'s weights and card to ``BUNDLED/NAME`` (a plain name; an existing one only with ``overwrite``)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise AutocolorError(f"NAME {name!r}: use letters, digits, - and _ (it becomes {name}.safetensors in "
                             f"{BUNDLED})")
    dst = BUNDLED / f"{name}.safetensors"
    if (dst.exists() or dst.with_suffix(".json").exists()) and not overwrite:
        raise AutocolorError(f"{name} is already bundled ({dst}); pass --overwrite to replace it")
    src = resolve(run)
    if Path(src).resolve() == dst.resolve():
        raise AutocolorError(f"{run} is the bundled {name} itself; give a training run")
    card = load_card(src)
    card["name"] = name
    card["training"]["command"] = _replay_command(card["training"]["command"])
    history = _history(Path(src))
    if history:
        card["training"]["history"] = history
    if heldout:
        twin_weights = resolve(heldout)
        twin = load_card(twin_weights)
        if twin["training"].get("final_fit"):
            raise AutocolorError(f"--heldout {heldout} is itself a final fit")
        card["training"]["heldout_run"] = {
            "command": _replay_command(twin["training"]["command"]), "data": twin["training"]["data"],
            "seconds": twin["training"]["seconds"], "validation": twin["metrics"]["validation"],
            "history": _history(Path(twin_weights))}
    BUNDLED.mkdir(exist_ok=True)
    shutil.copyfile(src, dst)
    write_card(dst, card)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("name")
    ap.add_argument("--heldout", default=None, metavar="RUN_DIR2")
    ap.add_argument("--overwrite", action="store_true", help="replace a bundled model of the same name")
    args = ap.parse_args()
    print(bundle(args.run, args.name, args.heldout, args.overwrite))


if __name__ == "__main__":
    run_main(main)
