# Quick start: `make demo` and `make test` each set up .venv (idempotently) and run.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch 2.13.0 is expected on the machine; pass TORCH=... to use another spec.
TORCH ?= torch==2.13.0
EXTRAS ?= all,dev
DEMO_DIR ?= demo-workspace

BIN := $(VENV)/bin
STAMP := $(VENV)/.scalegate-installed

.PHONY: demo test lint bench install clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when pyproject.toml changes or the torch spec differs from the one installed.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@echo "$(TORCH)" > $(STAMP)

demo: $(STAMP)
	$(BIN)/scalegate demo --dir $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
