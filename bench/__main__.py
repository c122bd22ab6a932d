"""Run every benchmark module in this package (each has a ``main()``), or only those named on the command line.

Each module records its figures; the run ends with one summary table (benchmark, figure, baseline, ratio, target,
met?) and the machine it ran on.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from bench import _common


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    chosen = [n for n in names if not argv or n in argv]
    unknown = set(argv) - set(names)
    if unknown:
        print(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(names)})", file=sys.stderr)
        return 2
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
