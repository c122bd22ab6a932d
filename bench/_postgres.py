"""PostgreSQL servers of the benchmarks' own: a throwaway cluster (initdb into a temporary directory, trust auth, a
free port, its own socket directory), configured as production configures its server, or as a drill asks.

``production_server()`` is the one ``python -m bench`` runs every benchmark on: the settings of
``config/postgresql.conf``, which docker-compose.yml's postgres role reads, so that a figure that rests on the
database's memory and checkpoints (a large import into a growing visit table above all) is the figure production
would see. ``BENCH_POSTGRES=url`` keeps the server ``DATABASE_URL`` names instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench._common import ROOT, free_port

#: The server settings production runs with (docker-compose.yml mounts this file as the server's configuration).
PRODUCTION_CONF = ROOT / "config" / "postgresql.conf"
#: Settings of the production file that name the network rather than the database: a private server keeps its own.
_NOT_COPIED = frozenset({"listen_addresses", "port", "unix_socket_directories"})


def conf_settings(path: Path) -> dict[str, str]:
    """The ``name = value`` settings of a postgresql.conf file, in order, quotes and comments taken off."""
    settings = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([a-z_.]+)\s*=?\s*(.+)", line)
        if not match:
            raise ValueError(f"{path.name}:{number}: not a setting: {line!r}")
        settings[match[1]] = match[2].strip().strip("'")
    return settings


def production_settings() -> dict[str, str]:
    """``config/postgresql.conf``'s settings of the database itself (memory, checkpoints, WAL, planner costs)."""
    return {name: value for name, value in conf_settings(PRODUCTION_CONF).items() if name not in _NOT_COPIED}


class Postgres:
    """A throwaway cluster in ``root``: initdb, start with ``settings`` (``-c name=value`` each), stop."""

    def __init__(self, root: Path, settings: dict[str, str]) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
        bindir = os.environ.get("BENCH_PG_BIN") or (candidates[-1] if candidates else "")
        if not bindir or not Path(bindir, "initdb").exists():
            raise RuntimeError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (set BENCH_PG_BIN)")
        self.bin = Path(bindir)
        self.settings = settings
        self.dir = root / "postgres"
        self.data = self.dir / "data"
        self.port = free_port()
        self.dir.mkdir()
        self.user: dict = {}
        if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres account
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.started = False

    def url(self, name: str = "cartwatch") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        log = (self.dir / "pg_ctl.log").open("ab") if self.dir.exists() else subprocess.DEVNULL
        try:
            subprocess.run(
                [str(self.bin / args[0]), *args[1:]],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=self.dir,
                start_new_session=True,  # Ctrl-C in the terminal reaches the benchmark, which stops the server itself
                **self.user,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}",
                *(f"-c {name}={value}" for name, value in self.settings.items()),
            ]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options, "-w", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.started = False

    def create_database(self, name: str = "cartwatch") -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def server_log(self, lines: int = 20) -> str:
        log = self.dir / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@contextlib.contextmanager
def production_server() -> Iterator[Postgres]:
    """A private server with production's settings (``config/postgresql.conf``), its data in a temporary directory
    (``BENCH_PG_DIR`` to choose where: a million-patient import takes some 40 GB), removed on the way out."""
    root = Path(tempfile.mkdtemp(prefix="cartwatch-bench-pg-", dir=os.environ.get("BENCH_PG_DIR") or None))
    root.chmod(0o755)  # the postgres account must reach its directory inside
    server = Postgres(root, production_settings())
    try:
        try:
            server.init()
            server.start()
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"the private server did not start:\n{server.server_log()}") from error
        server.create_database()
        yield server
    finally:
        if server.started:
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
