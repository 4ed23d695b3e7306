# ScaleLab: `make run` starts the stack, `make test` runs every check. Both set themselves up.

# Debian's python3 is built with optimisations (PGO/LTO) and serves requests markedly faster
# than an unoptimised build; use it when the machine has it.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench down clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed  ## install, then start the whole stack until Ctrl-C
	$(BIN)/scalelab up

down:  ## stop a stack started with `scalelab up --detach`
	$(BIN)/scalelab down

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## install, lint, then unit and integration tests against real processes
	$(BIN)/python -m pytest

bench: $(VENV)/.installed  ## cache-hit /data through the balancer vs nginx (needs wrk and nginx)
	$(BIN)/python -m tests.benchmarks.data_path

clean:
	rm -rf $(VENV) .scalelab *.egg-info
