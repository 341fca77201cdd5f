# Two entry points that work on a fresh machine: `make demo` (main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# extra pip options, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for PyTorch's CPU-only wheel
PIP_ARGS ?=

.PHONY: setup demo test lint

$(BIN)/autocolor: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_ARGS) -e ".[dev,web,onnx]"
	touch $@

setup: $(BIN)/autocolor

demo: setup
	$(BIN)/autocolor demo

lint: setup
	$(BIN)/ruff check .

test: setup
	bash scripts/test.sh
