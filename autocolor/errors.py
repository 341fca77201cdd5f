"""User-facing errors: the CLI prints these as one line and exits non-zero."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path


class AutocolorError(Exception):
    """An error the user can fix (bad path, missing dataset, bad flag value).

    ``rank_local=True`` marks an error that one torchrun rank can hit alone (its GPU, its share of the data):
    see ``error_prefix``."""

    def __init__(self, *args: object, rank_local: bool = False) -> None:
        super().__init__(*args)
        self.rank_local = rank_local


def error_prefix(exc: BaseException, prog: str = "autocolor") -> str | None:
    """How the CLI starts the line for ``exc``, or None when this process should stay quiet.

    Under torchrun every rank runs the same command, so flags, settings and errors passed on from rank 0 fail on
    every rank alike: rank 0 alone prints those. Another rank prints only what may be its own (an error marked
    ``rank_local``, or an OSError), naming itself."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        rank, world = 0, 1
    if world <= 1 or rank == 0:
        return f"{prog}: error: "
    if getattr(exc, "rank_local", False) or (isinstance(exc, OSError) and not isinstance(exc, AutocolorError)):
        return f"{prog}: error (rank {rank}): "
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries put whole graphs or tracebacks after it), else its
    type's name: what a one-line error shows of an exception it wraps."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def run_main(main: Callable[[], object], prog: str | None = None) -> None:
    """Run a script's ``main()`` as the ``autocolor`` CLI runs its commands: an ``AutocolorError`` or ``OSError``
    ends in one line ``PROG: error: ...`` (exit status 1) instead of a traceback, Ctrl-C in exit status 130.

    ``prog`` defaults to the script's file name. Use it in each script's ``if __name__ == "__main__":`` block."""
    prog = prog or Path(sys.argv[0]).name or "autocolor"
    try:
        main()
    except (AutocolorError, OSError) as exc:
        prefix = error_prefix(exc, prog)
        if prefix is not None:
            print(prefix + (str(exc).strip() or type(exc).__name__), file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt as exc:
        if error_prefix(exc, prog) is not None:
            print(f"\n{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def positive_int(text: str) -> int:
    """An argparse type for scripts: a whole number >= 1 (a count of epochs, images, steps or resamples)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
