# ScaleLab: `make run` starts the stack, `make test` runs every check. Both set themselves up.

# A Python >= 3.11. Debian's /usr/bin/python3 is built with optimisations (PGO/LTO) and serves
# requests markedly faster than an unoptimised build, so it comes first when it is new enough.
NEED_PYTHON := 3.11
PYTHON ?= $(shell for p in /usr/bin/python3 python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt

.PHONY: run test lint bench down lock clean python

python:
	@test -n "$(PYTHON)" && $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "ScaleLab needs Python >= $(NEED_PYTHON): put python3.11 or newer on PATH, or run make PYTHON=/path/to/python3.11"; \
		exit 1; }

$(BIN)/activate: | python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) $(BIN)/activate
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@

run: $(VENV)/.installed  ## install, then start the whole stack until Ctrl-C
	$(BIN)/scalelab up

down:  ## stop a stack started with `scalelab up --detach`
	$(BIN)/scalelab down

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## install, lint, then unit, integration, browser and compose tests against real processes
	$(BIN)/python -m pytest

bench: $(VENV)/.installed  ## cache-hit /data through the balancer vs nginx and HAProxy, and one gateway (needs wrk, nginx, haproxy)
	$(BIN)/python -m tests.benchmarks.data_path

lock: python  ## re-resolve every dependency into .ci/constraints.txt (then commit it)
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[test]'
	{ echo "# Every package CI and the images install, pinned: pip install -c $(CONSTRAINTS) ..."; \
	  echo "# Refresh with \`make lock\` (a fresh venv, pip install '.[test]', pip freeze)."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -ivE '^scalelab( @|==)'; } > $(CONSTRAINTS)
	rm -rf .lock-venv
	@echo "wrote $(CONSTRAINTS)"

clean:
	rm -rf $(VENV) .scalelab *.egg-info build
