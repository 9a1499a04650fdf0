# Two entry points for a fresh machine: `make demo` (set up + run a search) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One OpenMP thread: two are far slower on our 2-core machines (README, "Install").
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U "pip>=24"
	$(PY) -m pip install -c constraints.txt -e ".[dev]"
	touch $@

demo: setup
	$(PY) tools/search.py --dataset digits --preset quick

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV)
