# Two entry points for a fresh machine: `make demo` (set up + run a search) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One OpenMP thread: two are far slower on our 2-core machines (README, "Install").
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt tools/build_mmcv.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U "pip>=24"
	$(PY) -m pip install -c constraints.txt -e ".[timm,export,dev]"
	bash tools/build_mmcv.sh $(VENV)
	$(PY) -m pip install -c constraints.txt -e ".[mmdet,reid,slurm]"
	$(PY) -m pip install -c constraints.txt --no-deps openmim==0.3.9
	touch $@

demo: setup
	$(PY) tools/search.py --dataset digits --preset quick

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV)
