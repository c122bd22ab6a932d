"""Run every benchmark module in this package (each has a ``main()``), or only those named on the command line.

Each module records its figures; the run ends with one summary table (benchmark, figure, baseline, ratio, target,
met?) and the machine it ran on.

Every benchmark runs on a private PostgreSQL server with production's settings (``bench._postgres``), started here
and removed at the end, unless ``BENCH_POSTGRES=url`` says to use the server ``DATABASE_URL`` names (or the server
binaries are not on the machine, which the run says). The drills bring servers of their own (``OWN_SERVERS``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import sys
import traceback
from pathlib import Path

from bench import _common, _postgres

#: Benchmarks that start and break servers of their own: no private server is started for them alone.
OWN_SERVERS = frozenset({"drills"})


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    chosen = [n for n in names if not argv or n in argv]
    unknown = set(argv) - set(names)
    if unknown:
        print(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(names)})", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        if os.environ.get("BENCH_POSTGRES", "production") == "production" and set(chosen) - OWN_SERVERS:
            try:
                server = stack.enter_context(_postgres.production_server())
            except RuntimeError as error:
                print(f"PostgreSQL: {error}; the benchmarks use DATABASE_URL's server", flush=True)
            else:
                os.environ["DATABASE_URL"] = server.url()
                print(
                    f"PostgreSQL: a private server on :{server.port}, configured as config/postgresql.conf", flush=True
                )
        return run(chosen)


def run(chosen: list[str]) -> int:
    failed = 0
    for name in chosen:
        print(f"== bench.{name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            failed += bool(module.main())
        except Exception:
            traceback.print_exc()
            _common.record(name, "ERROR (see above)", "-", "-", "-", False)
            failed += 1
        sys.stdout.flush()
    _common.print_table()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
