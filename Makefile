# Each target sets up .venv first, so a fresh clone needs nothing but python3 (>= 3.10).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-gpu-image lint bench gpu-check gpu-accuracy gpu-lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Ignore any local find-links (e.g. a +cpu torch wheel): torchvision from PyPI needs the regular torch build.
	PIP_FIND_LINKS= $(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -c "import torch, torchvision, lightning; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', lightning.__version__)"
	touch $(STAMP)

# A short profiling fit on CPU with explicit synthetic data (CIFAR-10 itself is not needed).
# `make demo ARGS="--timer.ops true"` adds the operator window: which operations take each phase's time.
ARGS ?=
demo: setup
	$(BIN)/python -m cifarbench fit --config demo $(ARGS)

test: setup
	$(BIN)/python -m pytest

# The suite on the GPU image's versions (torch 2.11.0, torchvision 0.26.0, lightning 2.6.6, torchmetrics 1.9.0),
# on this CPU, in a second venv: what `make gpu-check` will meet, proven before a GPU is lent. The pins are
# installed with the project in one resolve, so pip cannot move them; PyPI's torch 2.11.0 is a CUDA build that
# runs on a CPU (several GB, downloaded once).
GPU_IMAGE_VENV := .venv-gpu-image
GPU_IMAGE_PINS := torch==2.11.0 torchvision==0.26.0 lightning==2.6.6 torchmetrics==1.9.0
GPU_IMAGE_STAMP := $(GPU_IMAGE_VENV)/.installed

$(GPU_IMAGE_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(GPU_IMAGE_VENV)
	$(GPU_IMAGE_VENV)/bin/pip install --quiet --upgrade pip
	PIP_FIND_LINKS= $(GPU_IMAGE_VENV)/bin/pip install --quiet $(GPU_IMAGE_PINS) -e ".[dev]"
	$(GPU_IMAGE_VENV)/bin/python -c "import torch, torchvision, lightning; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', lightning.__version__)"
	touch $(GPU_IMAGE_STAMP)

test-gpu-image: $(GPU_IMAGE_STAMP)
	$(GPU_IMAGE_VENV)/bin/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Speed comparisons measured side by side; epoch.py needs CUDA and says so without it.
bench: setup
	$(BIN)/python benchmarks/dataloading.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/epoch.py

# The GPU claims, most decisive first, sized for a lent H200's minutes (README, "Checking the GPU claims"). Each
# writes <gpu>[-accuracy|-lab].md and .json to --results-dir ($OUT/gpu-check when $OUT is set, else
# benchmarks/results/) after every step; without CUDA each says so and exits 0. On a GPU machine without a package
# registry, run the script with the machine's python instead.
# 5 minutes (watchdog at 5.5): smoke, lab vs fast, EpochTimer's cost, the gpu pipeline, the rest.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

# 5 minutes: the fast config's training accuracy after 5 epochs on 50,000 images against the lab config's.
gpu-accuracy: setup
	$(BIN)/python benchmarks/gpu_check.py --accuracy

# 8 minutes: `lab all` on the 50,000 synthetic images; its report kept in <results-dir>/<gpu>-lab/.
gpu-lab: setup
	$(BIN)/python benchmarks/gpu_check.py --lab

clean:
	rm -rf $(VENV) $(GPU_IMAGE_VENV) lightning_logs .pytest_cache
