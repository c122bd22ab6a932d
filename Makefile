# Two commands: `make run` (install, migrate, seed, serve with a worker and beat) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_PATIENTS ?= 300

.PHONY: run test install lint format screenshots constraints messages wrk deploy-check bench drills clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	@echo "==> Database: applying migrations"
	@$(PY) manage.py migrate --noinput --verbosity 0
	@echo "==> Static files: collecting"
	@$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "==> Seeds: products and protocols"
	@$(PY) manage.py load_seeds
	@echo "==> Demo cohort: $(DEMO_PATIENTS) patients"
	@$(PY) manage.py seed_demo --patients $(DEMO_PATIENTS)
	@echo "==> Demo users"
	@$(PY) manage.py ensure_demo_users
	@echo "==> Starting the web server, a worker and beat (emails go to files under var/mail/)"
	@bin/serve

# The browser tests drive Debian's Chromium (`apt-get install chromium`); without it they skip, except in CI.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The README's pictures: the browser tests, told to copy their screenshots into docs/screenshots/.
screenshots: install
	CARTWATCH_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# The workspace's Spanish catalogue: the strings marked in the code and templates gathered into
# locale/es/LC_MESSAGES/django.po (Django's makemessages, which needs GNU gettext: `apt-get install gettext`), then
# django.mo compiled from it with polib. Both are committed: a clean clone and CI need neither tool.
messages: install
	$(PY) manage.py makemessages --locale es --no-location --no-obsolete \
		--ignore 'tests/*' --ignore 'bench/*' --ignore 'var/*' --ignore 'docs/*'
	$(PY) -c "import polib; polib.pofile('locale/es/LC_MESSAGES/django.po').save_as_mofile('locale/es/LC_MESSAGES/django.mo')"

# constraints.txt: every package the install resolves to, pinned by pip-tools from pyproject.toml; and
# constraints-image.txt: the runtime packages alone at the same versions, with their hashes, for the image.
constraints: install
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file constraints.txt pyproject.toml
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--constraint constraints.txt --output-file constraints-image.txt pyproject.toml

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
