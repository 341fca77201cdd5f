#!/usr/bin/env bash
# Run lint and the test suite from the project's virtual environment (made by `make setup`).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
export AUTOCOLOR_DATA=${AUTOCOLOR_DATA:-$(cd .. && pwd)/shared/cifar10}  # absolute: some tests change directory
"$BIN/ruff" check .
"$BIN/python" -m pytest "$@"
