"""Store bundled (or any saved) models' weights as float16 in place: python scripts/halve.py NAME [NAME ...].

Convolution and linear weights become float16 (``autocolor.weights.half_state``), which halves a U-Net's file;
loading casts them back to float32, and inference runs in bf16 by default anyway. The card's ``storage`` says so.
"""

from __future__ import annotations

import sys

from autocolor.weights import halve

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        raise SystemExit(__doc__)
    for spec in sys.argv[1:]:
        print(halve(spec))
