# crm-chat: the two set-up commands of the README live here.
#   make run   install, migrate, load demo data and serve on http://127.0.0.1:8000
#   make test  install everything the tests need and run every test (SQLite and PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The demo website (the widget embedded on another origin) listens next to the CRM.
DEMO_PORT ?= $(shell echo $$(($(PORT) + 1)))

.PHONY: run test install install-test lint typecheck format screenshots bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'

# Embed snippets and printed URLs follow HOST and PORT unless CRM_PUBLIC_URL is set.
run: export CRM_PUBLIC_URL ?= http://$(HOST):$(PORT)
run: install
	$(BIN)/crm demo
	$(BIN)/crm run --host $(HOST) --port $(PORT) --demo-site $(DEMO_PORT)

test: install-test
	bash scripts/test.sh

lint: typecheck
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# mypy with django-stubs over src/ (settings in pyproject.toml's [tool.mypy]).
typecheck:
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) var build dist src/*.egg-info

screenshots: install-test
	$(BIN)/python scripts/screenshots.py

# Benchmarks against a bare ASGI baseline measured in the same run (bench/README.md);
# `make bench BENCH_ARGS=--quick` for a short smoke run.
bench: install-test
	$(BIN)/python -m bench $(BENCH_ARGS)
