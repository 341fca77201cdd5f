"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class AutocolorError(Exception):
    """An error the user can fix (bad path, missing dataset, bad flag value)."""
