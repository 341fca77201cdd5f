"""Copy a finished training run into the package as a bundled model: autocolor/bundled/NAME.{safetensors,json}.

Usage: python scripts/bundle.py RUN_DIR NAME
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from autocolor.train import _replay_command
from autocolor.weights import BUNDLED, load_card, resolve


def bundle(run: str, name: str) -> Path:
    src = resolve(run)
    card = load_card(src)
    card["name"] = name
    card["training"]["command"] = _replay_command(card["training"]["command"])
    metrics = Path(src).parent / "metrics.jsonl"
    if metrics.is_file():
        card["training"]["history"] = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    BUNDLED.mkdir(exist_ok=True)
    dst = BUNDLED / f"{name}.safetensors"
    shutil.copyfile(src, dst)
    dst.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(bundle(sys.argv[1], sys.argv[2]))
