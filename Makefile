# Quantum Job Tracker — the two commands are `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install tools up down test test-fast lint format bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

# Debian tools the tests drive: promtool (Prometheus alert-rule tests) and Chromium (the
# web console's browser tests, driven by Playwright with executable_path).
tools: ## install the Debian tools the tests use, if missing (needs root or sudo)
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); MISSING=""; \
	command -v promtool >/dev/null 2>&1 || MISSING="$$MISSING prometheus"; \
	command -v chromium >/dev/null 2>&1 || MISSING="$$MISSING chromium"; \
	if [ -n "$$MISSING" ]; then \
	  echo "installing Debian packages:$$MISSING"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $$SUDO apt-get install -y -qq --no-install-recommends $$MISSING >/dev/null; fi

up: install ## start NATS, PostgreSQL and every service in the foreground (Ctrl-C stops)
	$(BIN)/qjt up

down: ## stop a stack started by `make up` in another terminal
	$(BIN)/qjt down

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install tools lint ## the whole suite: unit, integration (real NATS + PostgreSQL), end-to-end
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest tests/unit

bench: install ## benchmarks; figures printed and saved under bench/results/
	$(BIN)/python -m bench

schema: install ## JSON Schema of every message under docs/schemas/
	$(BIN)/qjt schema

clean:
	rm -rf $(VENV) .qjt .pytest_cache .mypy_cache .ruff_cache *.egg-info
