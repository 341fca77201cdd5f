"""Store bundled (or any saved) models' weights as float16 in place: python scripts/halve.py NAME [NAME ...].

Convolution and linear weights become float16 (``autocolor.weights.half_state``), which halves a U-Net's file;
loading casts them back to float32, and inference runs in bf16 by default anyway. The card's ``storage`` says so.
"""

from __future__ import annotations

import sys

from autocolor.errors import run_main
from autocolor.weights import halve


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip())
        return
    if not args:
        raise SystemExit(f"{__doc__.strip()}\n\nhalve.py: error: give at least one NAME")
    if options := [a for a in args if a.startswith("-")]:
        raise SystemExit(f"usage: python scripts/halve.py NAME [NAME ...]\nhalve.py: error: unknown option "
                         f"{options[0]} (this script takes model names only)")
    for spec in args:
        print(halve(spec))


if __name__ == "__main__":
    run_main(main)
