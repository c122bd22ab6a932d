# Two commands: `make run` (install, migrate, seed, serve with a worker and beat) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_PATIENTS ?= 300

.PHONY: run test install lint format browser wrk deploy-check bench drills clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py load_seeds
	$(PY) manage.py seed_demo --patients $(DEMO_PATIENTS)
	$(PY) manage.py ensure_demo_users
	bin/serve

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser of its own).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

deploy-check: install
	DJANGO_ENV=production DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-deploy-check-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')} \
	DJANGO_ALLOWED_HOSTS=$${DJANGO_ALLOWED_HOSTS:-cartwatch.example.org} \
	$(PY) manage.py check --deploy --fail-level WARNING

# Debian's wrk, the load generator of bench/api_load.py.
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

bench: install wrk
	$(PY) -m bench

# Kill workers, restart PostgreSQL, stop Redis, run two beats: nothing lost, nothing doubled (bench/drills.py).
drills: install
	$(PY) -m bench drills

clean:
	rm -rf var .pytest_cache .hypothesis
