VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of PyTorch these machines carry: the torch bridge, whole-model
# prediction and the demo's Hugging Face model use it.
TORCH ?= torch==2.13.0

.PHONY: demo test clean bench

# torch first, pinned: an unpinned torch (the hf extra's) would pull a CUDA build;
# then the compiled paths' numba code, compiled once (about a minute of CPU)
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH)'
	$(PY) -m pip install -q -e '.[test,fast]'
	$(PY) -m trnsim.precompile
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m trnsim.demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info out
