"""Run the benchmarks: every `bench/*.py` module that defines `main(argv)`.

    .venv/bin/python -m bench                      # all of them, with their defaults
    .venv/bin/python -m bench demo_load csv_import # just these
    .venv/bin/python -m bench demo_load -- --appointments 1000000 --database sqlite

Arguments after `--` go to each module's `main`. Each module runs in its own process, so
one benchmark's Django setup, database and memory cannot skew the next.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = "import sys, importlib; sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))"


def benchmarks() -> list[str]:
    """Module names in bench/ with a top-level `main` function (found without importing)."""
    found = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found.append(path.stem)
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names, passed = (
        (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    )
    available = benchmarks()
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available)}")
        return 2
    failed = []
    print("name | value | baseline | ratio", flush=True)
    for name in names or available:
        print(f"# bench.{name} {' '.join(passed)}".rstrip(), flush=True)
        code = subprocess.run(
            [sys.executable, "-c", RUN, f"bench.{name}", *passed], cwd=HERE.parent
        ).returncode
        if code:
            failed.append(name)
            print(f"# bench.{name} failed (exit {code})", flush=True)
    if failed:
        print(f"# failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
