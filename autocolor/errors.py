"""User-facing errors: the CLI prints these as one line and exits non-zero."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


class AutocolorError(Exception):
    """An error the user can fix (bad path, missing dataset, bad flag value)."""


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
        text = str(exc).strip() or type(exc).__name__
        sys.exit(f"{prog}: error: {text}")
    except KeyboardInterrupt:
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
