VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The CPU build of PyTorch these machines carry; the torch bridge tests use it.
TORCH ?= torch==2.13.0

.PHONY: demo test clean bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q '$(TORCH)'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(PY) -m trnsim.demo

test: $(TEST_STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info out
