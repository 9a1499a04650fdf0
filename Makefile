# Two entry points for a fresh machine: `make demo` (set up what the search needs + run a search) and
# `make test` (set up everything + run the test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CORE := $(VENV)/.core-installed
STAMP := $(VENV)/.installed
# One OpenMP thread: two are far slower on our 2-core machines (README, "Install notes").
export OMP_NUM_THREADS ?= 1

.PHONY: setup setup-core demo test clean

setup-core: $(CORE)
setup: $(STAMP)

# The search core: torch, torchvision and the few libraries pdarts_wild imports (no mmcv build).
$(CORE): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U "pip>=24"
	$(PY) -m pip install -c constraints.txt -e .
	touch $@

# Everything: the timm, ONNX, MMDetection (mmcv built from source once, cached) and torchreid adapters, tests.
$(STAMP): $(CORE) tools/build_mmcv.sh
	$(PY) -m pip install -c constraints.txt -e ".[timm,export,dev]"
	bash tools/build_mmcv.sh $(VENV)
	$(PY) -m pip install -c constraints.txt -e ".[mmdet,reid,slurm]"
	$(PY) -m pip install -c constraints.txt --no-deps openmim==0.3.9
	touch $@

demo: setup-core
	$(PY) tools/search.py --dataset digits --preset quick

# One pytest-xdist worker per CPU (one thread each); a test file's tests share a worker and its fixtures.
test: setup
	$(PY) -m pytest -q -n auto --dist loadfile tests

clean:
	rm -rf $(VENV)
