# sagaboard: `make run` (the dashboard with demo traffic) and `make test` (every test).
# Both begin with `make setup`, which works on a fresh machine and is idempotent.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_RATE ?= 1
# The tests' own PostgreSQL database and Redis db; change them to run two suites side by side.
TEST_DB ?= sagaboard
TEST_REDIS_DB ?= 9

.PHONY: setup run test lint bench system-packages services chromium

setup: $(STAMP) system-packages
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py loaddemo

$(STAMP): pyproject.toml
	@python="$$(scripts/find-python)" || exit 1; \
	  [ -x $(PY) ] && $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || { rm -rf $(VENV); "$$python" -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# graphviz's `dot` draws the flow graphs.
system-packages:
	@command -v dot >/dev/null || scripts/apt-install graphviz

chromium:
	@[ -x /usr/bin/chromium ] || scripts/apt-install chromium

services:
	@scripts/ensure-services

run: setup
ifeq ($(strip $(REDIS_URL)),)
	$(PY) manage.py standalone --host $(HOST) --port $(PORT) --demo-rate $(DEMO_RATE)
else
	scripts/run-production $(HOST) $(PORT) $(DEMO_RATE)
endif

test: setup services chromium
	DATABASE_URL=postgres://root@127.0.0.1:5432/$(TEST_DB) REDIS_URL=redis://127.0.0.1:6379/$(TEST_REDIS_DB) \
	  $(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check sagaboard sagas tests bench

bench: setup services
	$(PY) bench/engine.py
