# Portal: `make run` serves it, `make test` tests it (both on a fresh machine with Python 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := test,postgres,prod,bench,lint
export FLASK_APP := portal
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint bench venv constraints clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The exact versions CI tested (constraints.txt) within the ranges setup.cfg allows.
$(STAMP): $(VENV)/bin/python setup.cfg pyproject.toml agent/pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]" -e ./agent
	touch $(STAMP)

venv: $(STAMP)

## run: migrate the database, make sure an admin exists, load demo data, serve with the scheduler
## (and the MQTT bridge when PORTAL_MQTT_URL is set)
run: $(STAMP)
	$(BIN)/flask db upgrade
	$(BIN)/flask users ensure-admin
	$(BIN)/flask demo --if-empty
	@$(BIN)/python -m portal.cli.hints
	@trap 'kill 0' INT TERM EXIT; \
	  $(BIN)/flask scheduler run & \
	  if [ -n "$$PORTAL_MQTT_URL" ]; then $(BIN)/flask mqtt run & fi; \
	  $(BIN)/flask run --host $(HOST) --port $(PORT)

## test: the whole suite (SQLite always; PostgreSQL too when PORTAL_TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff (lint and format check) and mypy (strict where setup says so)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## constraints: refresh constraints.txt with the newest versions setup.cfg allows (then run
## `make lint test` and commit the file)
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install --quiet --upgrade pip
	.venv-constraints/bin/pip install --quiet ".[$(EXTRAS)]" ./agent
	.venv-constraints/bin/pip freeze --exclude portal --exclude portal-agent \
	  | grep -v '^-e ' > constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
