# The README's first two commands: `make demo` (setup + the whole path on synthetic data) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q
# Pinned: a looser torch pin pulls GBs of CUDA wheels; 2.13.0 resolves to the local CPU build here.
TORCH ?= torch==2.13.0
# The TensorRT-RTX build checked here: it builds (not runs) engines on a CPU-only machine, so CI tests real builds.
TRT_RTX ?= tensorrt-rtx-cu13==1.7.1.116
# Ships a CPU-capable tritonserver (Triton 2.51) with the Python backend and stubs for Python 3.8-3.13.
PYTRITON ?= nvidia-pytriton==0.7.0

.PHONY: setup build demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml CMakeLists.txt cpp_ext/CMakeLists.txt
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH) $(TRT_RTX)
	$(PIP) "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	$(PIP) --no-build-isolation -e ".[train,export,tensorrt-rtx,bench,dev,triton]"
	# tritonserver with the Python backend for `edgeseg serve` and the Triton tests; --no-deps: see pyproject's triton extra
	$(PIP) --no-deps $(PYTRITON)
	touch $@

# Rebuild the C++/CUDA extension after editing cpp_ext/.
build: setup
	$(PIP) --no-build-isolation -e .

demo: setup
	$(VENV)/bin/edgeseg demo --out runs/demo

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) benchmarks/bench_kernels.py
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf build runs $(VENV)
