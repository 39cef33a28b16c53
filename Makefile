# Set-up and checks. `make demo` runs the main job on a small real default,
# `make test` runs the test suite; both install the package first.
PY ?= python3

.PHONY: install test demo

install:
	$(PY) -m pip install -q -r requirements-cpu.txt
	$(PY) -m pip install -q -e '.[dev]'

test: install
	$(PY) -m pytest

demo: install
	bash scripts/demo.sh
