# idfu-lab: two commands do all the set-up on a fresh clone.
#   make demo   the whole pipeline on the offline tiny profile (seeds 42 123 7), then the book
#   make test   the test suite
# Both create .venv first if it is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
CLI     := $(VENV)/bin/idfu-lab
CONFIG  ?= configs/tiny.yaml
SEEDS   ?= 42 123 7
# Seeds run side by side by `make demo` (idfu-lab run --jobs): the same results, sooner on 2 cores.
JOBS    ?= 2
RUN_DIR ?= runs/$(basename $(notdir $(CONFIG)))
# CPU machines get this torch build, installed before anything else so that pip never resolves the
# multi-GB CUDA wheels; where nvidia-smi works, the regular (CUDA) build is installed instead.
TORCH_CPU ?= torch==2.13.0
PYTEST_ARGS ?=
# Test workers (pytest-xdist): the demo run's tests are one unit on one worker, each other module a unit
# (tests/conftest.py). 2 fits our 2-core machines; TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

.PHONY: help venv bytecode demo test lab book book-check bench gpu-check lint format clean

help:
	@echo "make demo        run the whole pipeline on the tiny profile (CPU, offline) and build the book"
	@echo "make test        run the test suite"
	@echo "make lab         open JupyterLab on notebooks/ with the project's kernel"
	@echo "make book        rebuild the book from the latest run, or RUN=runs/<name> (runs nothing)"
	@echo "make book-check  open the built book in headless Chromium and check every page as a reader sees it"
	@echo "make bench       run the benchmarks (executor, demo time/memory, GPU training where CUDA is present)"
	@echo "make gpu-check   the paper path on one CUDA GPU, offline, <= 8 min (DRY_RUN=1: on a CPU, 2 layers)"
	@echo "make lint        ruff check + format check (notebooks included)"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@if nvidia-smi >/dev/null 2>&1; then \
	  echo "nvidia-smi works: installing the CUDA build of torch"; $(PY) -m pip install -q torch; \
	else \
	  echo "no GPU: installing $(TORCH_CPU) (CPU) first"; $(PY) -m pip install -q "$(TORCH_CPU)"; \
	fi
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The project's own bytecode, compiled here once: every kernel, command and test process imports the
# package, and where PYTHONDONTWRITEBYTECODE is set (as in many containers, ours included) each of them
# compiled it again (~0.5 s of CPU a kernel). compileall skips what is up to date, and Python checks
# every .pyc against its source before using it. (Installed packages are compiled by pip.)
bytecode: venv
	@$(PY) -m compileall -q -j 0 idfu_lab tools benchmarks >/dev/null

demo: bytecode
	HF_HUB_OFFLINE=1 $(CLI) run --config $(CONFIG) --seeds $(SEEDS) --run-dir $(RUN_DIR) --jobs $(JOBS)
	HF_HUB_OFFLINE=1 $(CLI) book --run $(RUN_DIR)
	@echo "run:  $(abspath $(RUN_DIR))"
	@echo "book: $(abspath _build/html/index.html)"

test: bytecode
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# JupyterLab refuses to start as root unless told to; root is the norm in containers, so say so and pass it.
lab: venv
	@if [ "$$(id -u)" = 0 ]; then \
	  echo "warning: running JupyterLab as root (--allow-root); anyone who can reach its port can run code as root"; \
	  $(VENV)/bin/jupyter lab --allow-root notebooks/; \
	else $(VENV)/bin/jupyter lab notebooks/; fi

# RUN=runs/<name> points the book at another run; without it, the run executed last.
book: bytecode
	HF_HUB_OFFLINE=1 $(CLI) book $(if $(RUN),--run $(RUN))

# The browser check (tools/book_check.py): Selenium drives Debian's chromium through its own
# chromedriver, both installed here when missing; nothing is downloaded at run time.
book-check: venv
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver for book-check"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	$(PY) tools/book_check.py $(if $(RUN),--run $(RUN))

bench: venv
	HF_HUB_OFFLINE=1 $(PY) benchmarks/executor.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/demo.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/train_throughput.py

# The paper profile's first GPU hour: random-weight Qwen2.5-Coder-3B in NF4, DPO steps, generation; one JSON.
# A GPU machine without network installs the missing wheels first (the script names them): WHEELS=dir.
GPU_CHECK_OUT ?= benchmarks/results/gpu_check.json
gpu-check:
	@if [ -n "$(WHEELS)" ]; then $(PY) -m pip install --no-index --no-deps $(WHEELS)/*.whl; fi
	HF_HUB_OFFLINE=1 $(PY) benchmarks/gpu_check.py $(if $(DRY_RUN),--dry-run) --out $(GPU_CHECK_OUT)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf _build book/results book/_generated
