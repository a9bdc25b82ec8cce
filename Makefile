# The two commands of the README: `make demo` (set up, then the main job on built-in
# data) and `make test` (set up, then the test suite). Everything installs into .venv.
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-py312 lint format typecheck venv clients-env cpp-client clean

venv: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip<25" "setuptools>=64,<70" wheel -c constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[cpu,onnx,test,ray,openvino,dev]"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/vslim demo

test: venv
	$(VENV)/bin/python -m pytest -q --durations=15 tests

# Maintainer checks, first in CI (pyproject.toml configures both; CONTRIBUTING.md): ruff's lint and import
# order and its formatter, then mypy over the product's packages.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: venv
	$(VENV)/bin/mypy

test-fast: venv
	$(VENV)/bin/python -m pytest -q -m "not slow" tests

# The field's own clients as test oracles, in their own environment (their protobuf pins clash with the stack's):
# Triton's perf_analyzer (a binary in the tritonclient 2.51 wheel; needs Debian's libb64-0d and the CUDA runtime
# library of the nvidia-cuda-runtime-cu12 wheel, no GPU) and KServe's Python SDK. Their tests skip without it
# (and fail in CI, which builds it).
CLIENTS ?= .venv-clients
clients-env: $(CLIENTS)/.installed

$(CLIENTS)/.installed: constraints-clients.txt
	$(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/pip install -q -c constraints-clients.txt "tritonclient[http]" kserve nvidia-cuda-runtime-cu12
	touch $@

# The second supported Python: the same install in .venv312, then the fast tests and every test that runs a
# real server (asyncio's shutdown differs between 3.11 and 3.12). CI runs it before `make test`.
PY312 ?= python3.12
test-py312:
	$(MAKE) venv PYTHON=$(PY312) VENV=.venv312
	.venv312/bin/python -m pytest -q -m "not slow or server" tests

cpp-client:
	VSLIM_WERROR=ON cpp_client/build.sh build/cpp_client

clean:
	rm -rf $(VENV) .venv312 $(CLIENTS) build *.egg-info vslim-demo serving/_generated
