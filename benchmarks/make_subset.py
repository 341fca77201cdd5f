"""Write a small CIFAR-10 folder (the first N images of each official batch) for machines the dataset cannot reach.

    python benchmarks/make_subset.py --data ../shared/cifar10 --out .gpudata --train 1300 --test 1000

The GPU check (``benchmarks/gpu_check.sh``) ran on such a subset: the device machine takes at most 64 MiB of
files, and the full dataset is 176 MB. With 5 x 1300 training images, 5,000 of them are held out for validation
as usual, so training sees 1,500.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from autocolor.data import FOLDER, TEST_FILES, TRAIN_FILES, locate, safe_unpickle  # noqa: E402
from autocolor.errors import AutocolorError, run_main  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import positive_int  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder holding cifar-10-batches-py/")
    ap.add_argument("--out", required=True, help="folder to write cifar-10-batches-py/ in (not the source's)")
    ap.add_argument("--train", type=positive_int, default=1300, help="images kept from each training batch")
    ap.add_argument("--test", type=positive_int, default=1000, help="images kept from the test batch")
    args = ap.parse_args()
    src = locate(args.data, download=False)
    dst = Path(args.out) / FOLDER
    if dst.resolve() == src.resolve() or Path(args.out).resolve() == src.resolve():
        raise AutocolorError(f"--out {args.out}: is the source data ({src}); writing there would overwrite the "
                             "full batches with the subset. Give another folder")
    if dst.exists() and not dst.is_dir():
        raise AutocolorError(f"--out {args.out}: {dst} exists and is not a folder")
    dst.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + TEST_FILES:
        n = args.test if name in TEST_FILES else args.train
        batch = safe_unpickle(src / name)
        keep = {b"data": batch[b"data"][:n].copy(), b"labels": list(batch[b"labels"][:n])}
        (dst / name).write_bytes(pickle.dumps(keep, protocol=4))
    print(f"wrote {dst}")


if __name__ == "__main__":
    run_main(main)
