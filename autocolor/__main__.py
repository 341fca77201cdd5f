"""``python -m autocolor`` runs the CLI."""

import sys

from autocolor.cli import main

sys.exit(main())
