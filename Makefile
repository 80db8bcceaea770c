# Two commands on a fresh machine: `make demo` runs the venue, `make test` runs every check.
# Both create .venv and install the project with its dev extras first, so nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check-all lint typecheck compiled browser unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jinlian up demo-consortium --demo

test: lint typecheck compiled unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The compiled build of the pure core (docs/venue.md): mypyc needs a C compiler and the Python
# headers. Installed with apt-get when missing and root (a fresh CI machine); otherwise a clear
# message, and the tests that compare the builds skip naming why. `jinlian build` compiles once
# per source hash (a minute or two), into .venv/jinlian-compiled/.
compiled: $(STAMP)
	@if ! $(BIN)/jinlian build --check >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing gcc and the Python headers for the compiled build (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null; \
	  else \
	    echo "make compiled: $$($(BIN)/jinlian build --check); install gcc and the Python headers" \
	      "(Debian/Ubuntu: apt-get install gcc python3-dev, as root) for the compiled build;" \
	      "everything runs on the pure build meanwhile" >&2; \
	  fi; \
	fi
	$(BIN)/jinlian build || [ $$? = 3 ]

# The web console's browser tests (docs/console.md) drive Debian's chromium with Playwright
# (`executable_path`, never `playwright install`): installed with apt-get when missing and root,
# like the compiled build's compiler; otherwise a message, and those tests skip naming why.
browser: $(STAMP)
	@if ! command -v chromium >/dev/null && [ -z "$$JINLIAN_CHROMIUM" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the console's browser tests (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make browser: no chromium; install it (Debian/Ubuntu: apt-get install chromium," \
	      "as root) or set JINLIAN_CHROMIUM; the console's browser tests skip meanwhile" >&2; \
	  fi; \
	fi

unit: $(STAMP) browser
	$(BIN)/pytest -q

# Everything `make test` runs, plus the checks too long for CI (random-seed replication
# simulations, soak smoke runs): tests that run only when JINLIAN_CHECK_ALL=1.
check-all: lint typecheck compiled browser
	JINLIAN_CHECK_ALL=1 $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/jinlian bench matching
	$(BIN)/jinlian bench venue
	$(BIN)/jinlian bench ledger
	$(BIN)/jinlian bench gateway
	$(BIN)/jinlian bench machine
	$(BIN)/jinlian bench simulate
	$(BIN)/jinlian bench finance

clean:
	rm -rf demo-consortium $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
