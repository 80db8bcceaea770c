# Two commands on a fresh machine: `make demo` runs the venue, `make test` runs every check.
# Both create .venv and install the project with its dev extras first, so nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check-all lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jinlian up demo-consortium --demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

# Everything `make test` runs, plus the checks too long for CI (random-seed replication
# simulations, soak smoke runs): tests that run only when JINLIAN_CHECK_ALL=1.
check-all: lint typecheck
	JINLIAN_CHECK_ALL=1 $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/jinlian bench matching
	$(BIN)/jinlian bench venue
	$(BIN)/jinlian bench ledger
	$(BIN)/jinlian bench gateway
	$(BIN)/jinlian bench machine
	$(BIN)/jinlian bench simulate

clean:
	rm -rf demo-consortium $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
