"""`careline demo --appointments N`: time and peak anonymous memory (see
bench.common.anonymous_memory_mib), beside a raw bulk insert.

For each database (SQLite, PostgreSQL) it makes a fresh migrated database, inserts N
appointment-shaped rows straight into a copy of the appointment table (multi-row INSERTs
on SQLite, COPY on PostgreSQL: the true limit) as the same-run baseline, drops the
copy, then runs the real `careline demo` in a child process and prints
`name | value | baseline | ratio` lines:

    .venv/bin/python -m bench.demo_load [--appointments 1000000] [--database sqlite]
"""

from __future__ import annotations

import argparse
import re
import sys

from bench.common import careline, database_env, figure, fresh_database, run_child, run_raw_insert

PHASE = re.compile(r"([\d,]+) appointments in ([\d.]+) s")


def measure(kind: str, appointments: int) -> list[str]:
    url = fresh_database(kind, "careline_bench_demo")
    raw_seconds, raw = run_raw_insert(url, appointments)
    demo = run_child(
        careline("demo", "--appointments", str(appointments), "--verbosity", "0"),
        database_env(url),
    )
    if demo.returncode:
        raise RuntimeError(f"careline demo failed on {kind}:\n{demo.stderr[-2000:]}")
    phase = PHASE.search(demo.stdout)
    if not phase or int(phase.group(1).replace(",", "")) != appointments:
        raise RuntimeError(f"careline demo did not report {appointments:,} appointments")
    phase_seconds = float(phase.group(2))
    tag = f"[{kind},{appointments}]"
    return [
        figure(
            f"demo_load_appointment_rows_per_s{tag}",
            appointments / max(phase_seconds, 1e-3),
            appointments / raw_seconds,
        ),
        figure(
            f"demo_load_whole_command_rows_per_s{tag}",
            appointments / demo.seconds,
            appointments / raw.seconds,
        ),
        figure(f"demo_load_wall_s{tag}", demo.seconds, raw.seconds, ".1f"),
        figure(f"demo_load_peak_anon_mib{tag}", demo.peak_anon_mib, raw.peak_anon_mib, ".0f"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_load", description=__doc__)
    parser.add_argument("--appointments", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    if args.appointments < 1:
        parser.error("--appointments must be positive")
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    for kind in kinds:
        for line in measure(kind, args.appointments):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
