# Portal: `make run` serves it, `make test` tests it (both on a fresh machine with Python 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export FLASK_APP := portal
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test bench venv migrate clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(VENV)/bin/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e ".[test,postgres,prod,bench]"
	touch $(STAMP)

venv: $(STAMP)

## run: migrate the database, make sure an admin exists, load demo data, serve with the scheduler
run: $(STAMP)
	$(BIN)/flask db upgrade
	$(BIN)/flask users ensure-admin
	$(BIN)/flask demo --if-empty
	@$(BIN)/python -m portal.cli.hints
	@trap 'kill 0' INT TERM EXIT; \
	  $(BIN)/flask scheduler run & \
	  $(BIN)/flask run --host $(HOST) --port $(PORT)

## test: the whole suite (SQLite always; PostgreSQL too when PORTAL_TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
