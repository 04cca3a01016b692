# Kefu: `make run` to try it, `make test` to check it. Everything lives in .venv/ and var/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KEFU_DATABASE_URL ?= sqlite:///var/kefu.db

.PHONY: run test lint install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/kefu db upgrade
	$(BIN)/kefu demo seed
	KEFU_DEMO=1 $(BIN)/kefu serve --host 127.0.0.1 --port 8000

lint: install-test
	$(BIN)/ruff check .

test: install-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
