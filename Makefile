# Careline: `make run` to try it, `make test` to check it.
PYTHON ?= python3
# `make run PORT=8010`: the port served; CARELINE_BASE_URL follows it unless set.
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres lint bench bench-big soak browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Set up from nothing and run Careline on SQLite with the simulator gateway; emails are
## printed on the console (EMAIL_URL=console:) unless EMAIL_URL says otherwise.
run: $(STAMP)
	$(BIN)/careline migrate --noinput
	$(BIN)/careline demo --if-empty
	CARELINE_SMS_GATEWAY=$${CARELINE_SMS_GATEWAY:-simulator} \
	  EMAIL_URL=$${EMAIL_URL:-console:} \
	  CARELINE_BASE_URL=$${CARELINE_BASE_URL:-http://127.0.0.1:$(PORT)} \
	  $(BIN)/careline serve --bind 127.0.0.1:$(PORT)

## Set up from nothing and run every test, on SQLite and on PostgreSQL.
test: $(STAMP) browser-deps
	$(MAKE) lint
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: $(STAMP)
	env -u DATABASE_URL $(BIN)/pytest -q -p no:cacheprovider

# Stops the PostgreSQL cluster afterwards unless it was already running before.
test-postgres: $(STAMP)
	@up=0; ./scripts/postgres.sh running && up=1; \
	url=$$(CARELINE_PG_SHARED_BUFFERS=256MB ./scripts/postgres.sh | tail -1) || exit 1; \
	DATABASE_URL=$$url $(BIN)/pytest -q -p no:cacheprovider; code=$$?; \
	[ $$up = 1 ] || ./scripts/postgres.sh stop; exit $$code

browser-deps:
	./scripts/browser-deps.sh

## The house rules: ruff, the layers and owners (docs/architecture.md), migrations up to date.
lint: $(STAMP)
	$(BIN)/ruff check careline tests bench scripts
	$(BIN)/ruff format --check careline tests bench scripts
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/check_table_owners.py
	env -u DATABASE_URL $(BIN)/python manage.py makemigrations --check --dry-run

## Run the benchmarks at 10^4..10^6 rows on SQLite and PostgreSQL; writes docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m bench.report

## The 10^6 sizes `make bench` skips (about two to three hours); writes docs/benchmarks-big.md.
bench-big: $(STAMP)
	$(BIN)/python -m bench.report --big

## The full-size fault tests (marked `soak`) on SQLite, then PostgreSQL; passes when none
## are marked.
soak: $(STAMP)
	CARELINE_SOAK=1 env -u DATABASE_URL $(BIN)/pytest -q -p no:cacheprovider -m soak tests/; \
	  code=$$?; test $$code -eq 0 -o $$code -eq 5
	url=$$(./scripts/postgres.sh) && url=$$(echo "$$url" | tail -1) && \
	  CARELINE_SOAK=1 DATABASE_URL=$$url $(BIN)/pytest -q -p no:cacheprovider -m soak tests/; \
	  code=$$?; test $$code -eq 0 -o $$code -eq 5

clean:
	rm -rf $(VENV) .pgdata careline.sqlite3 careline-test.sqlite3 staticfiles
