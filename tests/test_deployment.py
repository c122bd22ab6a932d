"""Production deployment: the compose file is valid, its commands are the documented ones, settings fail loudly."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO

COMPOSE = REPO / ".venv" / "bin" / "docker-compose"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update(extra)
    return env


def _compose(secret, *args: str) -> dict:
    binary = COMPOSE if COMPOSE.exists() else "docker-compose"
    result = subprocess.run(
        [str(binary), "-f", "docker-compose.yml", *args, "config", "--format", "json"],
        cwd=REPO,
        env=_env(DJANGO_SECRET_KEY_FILE=str(secret)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), f"compose warns: {result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def compose_secret(tmp_path_factory):
    secret = tmp_path_factory.mktemp("secrets") / "django_secret_key"
    secret.write_text("compose-validation-only")
    return secret


@pytest.fixture(scope="module")
def compose_config(compose_secret) -> dict:
    return _compose(compose_secret)


def test_it_keeps_the_mail_catcher_behind_a_profile(compose_config, compose_secret):
    assert "mailcatcher" not in compose_config["services"]
    with_catcher = _compose(compose_secret, "--profile", "mailcatcher")["services"]
    assert with_catcher["mailcatcher"]["profiles"] == ["mailcatcher"]
    assert with_catcher["web"]["environment"]["EMAIL_URL"] == "smtp://mailcatcher:1025"


def test_it_pins_every_image_to_a_release(compose_config, compose_secret):
    services = _compose(compose_secret, "--profile", "mailcatcher")["services"]
    pinned = re.compile(r"^[\w./-]+(:v?\d+\.\d+(\.\d+)?(-[\w.-]+)?|@sha256:[0-9a-f]{64})$")  # a release, not "15"
    for name, service in services.items():
        if "build" in service:
            assert not service["image"].endswith(":latest"), name
        else:
            assert pinned.match(service["image"]), f"{name} runs an unpinned image: {service['image']}"
    base = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("FROM "))
    assert pinned.match(base.split()[1]), base


def test_it_fronts_the_web_role_with_tls(compose_config):
    services = compose_config["services"]
    proxy = services["proxy"]
    assert {p["target"] for p in proxy["ports"]} == {443, 80}
    assert "ports" not in services["web"]  # plain HTTP only inside the compose network
    assert proxy["environment"]["CARTWATCH_TLS"] == "internal"
    assert any(v["target"] == "/etc/caddy/Caddyfile" for v in proxy["volumes"])
    caddyfile = (REPO / "config" / "Caddyfile").read_text()
    assert "reverse_proxy {$CARTWATCH_UPSTREAM:web:8000}" in caddyfile and "tls {$CARTWATCH_TLS:internal}" in caddyfile
    assert services["web"]["environment"]["CARTWATCH_TRUSTED_PROXIES"] == "1"


def _command(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def test_it_declares_every_production_role(compose_config):
    services = compose_config["services"]
    assert {"proxy", "web", "worker", "beat", "postgres", "redis"} <= set(services)
    assert services["beat"]["deploy"]["replicas"] == 1
    for name in ("web", "worker", "postgres", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("web", "worker", "beat", "postgres", "redis"):
        assert services[name]["restart"] == "unless-stopped"
    assert {"postgres-data", "redis-data", "beat-state"} <= set(compose_config["volumes"])
    assert services["web"]["environment"]["DJANGO_SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"


def test_it_runs_postgres_with_the_registry_settings_the_benchmarks_use(compose_config):
    from bench import _postgres

    postgres = compose_config["services"]["postgres"]
    config_file = next(arg.split("=", 1)[1] for arg in postgres["command"] if arg.startswith("config_file="))
    mounts = {volume["target"]: volume for volume in postgres["volumes"]}
    assert mounts[config_file]["source"] == str(_postgres.PRODUCTION_CONF) and mounts[config_file]["read_only"]
    settings = _postgres.conf_settings(_postgres.PRODUCTION_CONF)
    assert settings["listen_addresses"] == "*"  # else the other containers could not reach it
    assert _postgres.production_settings() == {
        name: value for name, value in settings.items() if name != "listen_addresses"
    }


@pytest.mark.services
def test_it_starts_a_server_with_the_registry_settings():
    """The settings file is one this PostgreSQL accepts (a misspelt setting or an unknown value stops the server
    from starting, in production as here), and a server started with it has them in force."""
    import glob

    import psycopg

    from bench import _postgres
    from tests.conftest import missing_service

    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        missing_service("PostgreSQL server binaries (initdb) for a private server")
    with _postgres.production_server() as server, psycopg.connect(server.url()) as conn:
        for name, value in _postgres.production_settings().items():
            shown = conn.execute(f"SHOW {name}").fetchone()[0]
            assert shown == value, name


def test_it_runs_in_compose_the_commands_the_readme_documents(compose_config):
    readme = (REPO / "README.md").read_text()
    services = compose_config["services"]
    for name in ("migrate", "web", "worker", "beat"):
        command = _command(services[name])
        for part in re.split(r"\s*&&\s*|^sh -c ", command):
            part = part.strip()
            if part:
                assert part in readme, f"the README does not show the {name} command: {part}"


def _gunicorn_options(command: list[str]) -> dict[str, str]:
    """The options after the WSGI app of a gunicorn command line, without the address it binds."""
    rest = command[command.index("config.wsgi:application") + 1 :]
    options = dict(zip(rest[::2], rest[1::2], strict=True))
    options.pop("--bind")
    return options


def test_it_serves_with_the_same_gunicorn_settings_in_the_image_compose_bin_serve_and_the_benchmark(compose_config):
    from bench import api_load

    image = json.loads(
        next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))[4:]
    )
    assert compose_config["services"]["web"]["command"] == image
    serve = next(line for line in (REPO / "bin" / "serve").read_text().splitlines() if "gunicorn" in line)
    assert _gunicorn_options(shlex.split(serve.rstrip("&"))) == _gunicorn_options(image)
    production = _gunicorn_options(image)
    assert "--threads" not in production and "--worker-class" not in production  # sync workers, one thread each
    bench = _gunicorn_options(
        api_load.gunicorn_args("config.wsgi:application", 8000, api_load.production_workers(), api_load.THREADS)
    )
    assert bench == {**production, "--threads": "1"}  # the access log included, as production writes it


def test_it_bounds_every_web_request_with_an_explicit_worker_timeout(monkeypatch, tmp_path):
    """Every web command loads ``config/gunicorn.py`` (the test above): its timeout is the one in force."""
    import importlib

    # Importing the module sets this when unset, for the whole process: it must stay the test's, and go with it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("CARTWATCH_WEB_TIMEOUT_SECONDS", raising=False)
    import config.gunicorn

    assert importlib.reload(config.gunicorn).timeout == 60
    monkeypatch.setenv("CARTWATCH_WEB_TIMEOUT_SECONDS", "45")
    assert importlib.reload(config.gunicorn).timeout == 45
    production = _gunicorn_options(
        json.loads(next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))[4:])
    )
    assert production.get("--config") == "python:config.gunicorn" and "--timeout" not in production


def test_it_runs_the_deploy_check_and_the_tests_in_ci():
    ci = (REPO / ".ci" / "run").read_text()
    assert "make lint" in ci and "make test" in ci and "make deploy-check" in ci
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme and "make deploy-check" in readme


def test_it_refuses_to_start_in_production_without_a_secret_key():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=_env(DJANGO_ENV="production", DJANGO_ALLOWED_HOSTS="cartwatch.example.org"),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_it_passes_the_deployment_checks_with_production_settings(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("a-long-random-production-secret-" + "x9" * 30)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=_env(DJANGO_ENV="production", DJANGO_SECRET_KEY_FILE=str(secret), DJANGO_ALLOWED_HOSTS="cw.example.org"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=_env(**env), capture_output=True, text=True
    )


STRONG_KEY = "a-long-random-production-secret-" + "x9" * 30


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DJANGO_SECRET_KEY": "short-but-random-7Gq"}, "shorter than 50 characters"),
        ({"DJANGO_SECRET_KEY": "ab" * 40}, "fewer than 5 different characters"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off in production"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_SECURE_SSL_REDIRECT": "ture"}, "must be true or false"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "EMAIL_USE_TLS": "yes please"}, "must be true or false"),
    ],
)
def test_it_refuses_unsafe_production_settings_with_a_one_line_reason(env, reason):
    result = _check(DJANGO_ENV="production", DJANGO_ALLOWED_HOSTS="cw.example.org", EMAIL_HOST="mail", **env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr  # one line, no traceback
    assert reason in result.stderr
    assert env["DJANGO_SECRET_KEY"] not in result.stderr  # the reason never quotes the secret


def test_it_reads_any_setting_from_a_file_named_by_its_file_variable(tmp_path):
    (tmp_path / "key").write_text(STRONG_KEY)
    (tmp_path / "email").write_text("smtp+tls://relay-user:relay-pass@relay.example.org:587")
    script = "from django.conf import settings as s; print(s.EMAIL_HOST, s.EMAIL_HOST_PASSWORD, s.SECRET_KEY == KEY)"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); KEY = {STRONG_KEY!r}; {script}"],
        cwd=REPO,
        env=_env(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_ENV="production",
            DJANGO_ALLOWED_HOSTS="cw.example.org",
            DJANGO_SECRET_KEY_FILE=str(tmp_path / "key"),
            EMAIL_URL_FILE=str(tmp_path / "email"),
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["relay.example.org", "relay-pass", "True"]


def test_it_writes_one_json_object_per_log_line_when_asked():
    script = "import django, logging; django.setup(); logging.getLogger('surveillance.x').warning('reminder=%s', 7)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=_env(DJANGO_SETTINGS_MODULE="config.settings", CARTWATCH_LOG_FORMAT="json"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "surveillance.x", "reminder=7")
    assert _check(CARTWATCH_LOG_FORMAT="jsn").returncode == 1


@contextlib.contextmanager
def production_web(environment: dict, port: int, log_path):
    """The compose file's web command on a loopback port with the web role's environment, its output in a file."""
    command = _gunicorn_command(environment["command"], f"127.0.0.1:{port}")
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=REPO, env=environment["env"], stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(150):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                pytest.fail("gunicorn did not answer: " + log_path.read_text()[-2000:])
            yield
        finally:
            server.terminate()
            server.wait(timeout=30)


def _gunicorn_command(command: list[str], bind: str) -> list[str]:
    """``gunicorn`` as ``python -m gunicorn`` (this virtualenv's), one worker, bound to ``bind``."""
    options = dict(zip(command[2::2], command[3::2], strict=True)) | {"--bind": bind, "--workers": "1"}
    return [sys.executable, "-m", "gunicorn", command[1], *[item for pair in options.items() for item in pair]]


def compose_role(compose_config: dict, name: str, tmp_path) -> dict:
    """An application role as compose configures it, against this test run's (migrated) database and broker."""
    from django.conf import settings

    role = compose_config["services"][name]
    database = settings.DATABASES["default"]
    key = tmp_path / "key"
    key.write_text(STRONG_KEY)
    environment = {variable: str(value) for variable, value in role["environment"].items()}
    environment.update(
        DJANGO_SECRET_KEY_FILE=str(key),
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "filesystem://"),
        CARTWATCH_CACHE_URL="",
        CARTWATCH_VAR_DIR=str(tmp_path),
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )
    return {"command": role["command"], "env": _env(**environment), "healthcheck": role["healthcheck"]["test"]}


@pytest.fixture
def compose_web(compose_config, transactional_db, tmp_path):
    """The web role as compose configures it."""
    return compose_role(compose_config, "web", tmp_path)


def _normal(name: str) -> str:
    """A distribution's name as PEP 503 compares them (``prometheus_client`` is ``prometheus-client``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(group: list[str]) -> set[str]:
    return {_normal(re.split(r"[\s<>=\[;]", requirement, maxsplit=1)[0]) for requirement in group}


def test_it_declares_the_packages_the_code_imports_and_imports_the_declared_ones():
    import ast
    import importlib.metadata
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.14"
    declared = _declared(project["dependencies"]) | {_normal(project["name"])}
    owners = importlib.metadata.packages_distributions()
    sources = [*(REPO / "surveillance").rglob("*.py"), *(REPO / "config").glob("*.py")]
    imported = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    undeclared = {
        name: owners[name] for name in imported if name in owners and not {_normal(d) for d in owners[name]} & declared
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    # every declared package is used: imported, or named by settings or a command (gunicorn, psycopg's backend)
    text = "\n".join(s.read_text() for s in [*sources, REPO / "Dockerfile", REPO / "docker-compose.yml"])
    modules = {_normal(d): {name for name, dists in owners.items() if d in dists} for ds in owners.values() for d in ds}
    modules["psycopg"] = {"postgres"}  # Django's PostgreSQL backend imports it for a postgres:// DATABASE_URL
    unused = {dist for dist in declared if not any(re.search(rf"\b{m}\b", text) for m in modules.get(dist, {dist}))}
    assert not unused, f"declared but never used: {unused}"


def _pins(path) -> dict[str, str]:
    """``name==version`` lines of a pip-compile output."""
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", path.read_text(), re.M))


def test_it_builds_the_image_from_hashed_pins_of_the_same_versions_as_the_constraints():
    import tomllib

    image = (REPO / "constraints-image.txt").read_text()
    pins, constraints = _pins(REPO / "constraints-image.txt"), _pins(REPO / "constraints.txt")
    runtime = _declared(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert runtime <= {_normal(name) for name in pins}, "every runtime dependency is pinned for the image"
    assert {name: v for name, v in pins.items() if constraints.get(name) != v} == {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", image):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--require-hashes -r constraints-image.txt" in dockerfile
    assert "COPY locale ./locale" in dockerfile  # the Spanish workspace needs its compiled catalogue


def test_it_runs_make_test_without_root():
    makefile = (REPO / "Makefile").read_text()
    test_rule = re.search(r"^test:(.*)\n((?:\t.*\n)*)", makefile, re.M)
    prerequisites = test_rule.group(1).split()
    assert prerequisites == ["install"], prerequisites
    assert "apt-get" not in test_rule.group(2)
    assert "apt-get" not in re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)*)", makefile, re.M).group(1)
    ci = (REPO / ".ci" / "run").read_text()  # CI (root) still runs them, with Debian's Chromium and Caddy
    assert "apt-get install -y -qq $missing" in ci
    assert set(re.search(r"for tool in ([\w ]+); do", ci).group(1).split()) == {"chromium", "caddy"}


def test_it_never_rewrites_tracked_screenshots_in_a_test_run():
    from tests.e2e import conftest as e2e

    assert e2e.SCREENSHOTS is None or os.environ.get("CARTWATCH_SCREENSHOTS_DIR")
    assert "CARTWATCH_SCREENSHOTS_DIR=docs/screenshots" in (REPO / "Makefile").read_text()


def test_it_collects_the_static_files_as_the_image_build_does(tmp_path):
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    build_step = next(line for line in lines if line.startswith("RUN ") and "collectstatic" in line)[4:]
    result = subprocess.run(
        ["sh", "-c", build_step],
        cwd=REPO,
        env=_env(
            DJANGO_ENV="production",
            DJANGO_STATIC_ROOT=str(tmp_path),
            PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "staticfiles.json").exists()


def test_it_keeps_the_json_log_format_in_the_celery_worker(tmp_path):
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-mingle",
        ],
        cwd=REPO,
        env=_env(
            CARTWATCH_LOG_FORMAT="json",
            CARTWATCH_VAR_DIR=str(tmp_path),
            CELERY_BROKER_URL="filesystem://",
            CELERY_TASK_DEFAULT_QUEUE="json-log-test",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while ready is None and time.monotonic() < deadline:
            line = worker.stdout.readline()
            if " ready." in line:
                ready = line
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert ready is not None, "the worker did not report ready"
    assert json.loads(ready)["level"] == "INFO"
