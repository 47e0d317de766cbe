# fsrt: two commands from a fresh machine:  make bench  and  make test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fsrt-installed
TORCH  ?= torch==2.13.0
# pytest workers (2 cores here); override with `make test PYTEST_WORKERS=0` to run serially.
# Tests go out two at a time (--maxschedchunk 2), so the minutes-long README sections that
# tests/conftest.py puts first are shared between the workers instead of queued on one.
PYTEST_WORKERS ?= 2

.PHONY: install test lint bench clean

install: $(STAMP)

# Torch is pinned and installed first so the project's `torch>=` range is already met and pip
# never pulls the multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --maxschedchunk 2 -q $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/fsrt bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
