"""Report queries over the demo: milliseconds per analytics query, beside a full-table COUNT(*).

For each database (SQLite, PostgreSQL) it loads the demo organization with N appointments
(`generate_demo` with a fixed `now`, so every run reports over the same data) into its own
database, then times `appointment_metrics` grouped by practice, provider, appointment type,
week and month, and `before_and_after` over all practices. Each figure is the median of a
few runs; the same-run baseline is a plain `SELECT COUNT(*)` over the appointment table.
Target (issue 9): under 2 s each at 10^6 appointments.

    .venv/bin/python -m bench.reports [--appointments 1000000] [--database sqlite]
    .venv/bin/python -m bench.reports --reuse-demo   # use a demo of that size loaded before

The demo database stays in place afterwards (named by its size), so `bench.staff_pages
--reuse-demo` can measure the staff pages over the same data without loading it again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from bench.common import (
    BENCH_DIR,
    REPO,
    careline,
    database_env,
    figure,
    fresh_database,
    postgres_server_url,
    run_child,
    timer,
)

# A Monday; fixed so that every run builds (and reports over) exactly the same demo.
DEMO_NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
DEMO_SLUG = "bench-demo"
REPEATS = 3
GROUPINGS = ("practice", "provider", "appointment_type", "week", "month")


def demo_database_name(appointments: int) -> str:
    return f"careline_bench_demo_{appointments}"


def _existing_url(kind: str, name: str) -> str | None:
    """DATABASE_URL of the database `name` if it exists already, else None."""
    if kind == "sqlite":
        path = BENCH_DIR / f"{name}.sqlite3"
        return f"sqlite:///{path}" if path.exists() else None
    import psycopg

    server = postgres_server_url()
    with psycopg.connect(server, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return server.rsplit("/", 1)[0] + f"/{name}" if found else None


def use_database(url: str) -> None:
    """Set up Django in this process on `url` (one database per process)."""
    os.environ["DATABASE_URL"] = url
    os.environ["CARELINE_DATA_DIR"] = str(BENCH_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")
    # Per-message INFO lines would cost time inside the measurement; warnings still show.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", "No directory at")  # no collectstatic for a bench
    import django

    django.setup()


def _loaded_demo(appointments: int) -> bool:
    from careline.clinics.models import Organization
    from careline.scheduling.models import Appointment

    org = Organization.objects.filter(slug=DEMO_SLUG).first()
    return org is not None and Appointment.objects.filter(organization=org).count() == appointments


def demo_database(kind: str, appointments: int, *, reuse: bool) -> tuple[str, float | None]:
    """A database holding the bench demo of `appointments`, with this process's Django on it.

    Returns (DATABASE_URL, seconds `generate_demo` took, or None when an existing demo of
    that size was reused).
    """
    name = demo_database_name(appointments)
    url = _existing_url(kind, name) if reuse else None
    if url:
        # A reused database still gets any migration added since it was loaded.
        migrate = run_child(careline("migrate", "--noinput", "--skip-checks"), database_env(url))
        if migrate.returncode == 0:
            use_database(url)
            if _loaded_demo(appointments):
                return url, None
            from django.db import connections

            connections.close_all()
    fresh = fresh_database(kind, name)
    if url is None:
        use_database(fresh)
    from careline.demo.generator import DemoOptions, generate_demo

    with timer() as t:
        generate_demo(
            DemoOptions(appointments=appointments, organization_slug=DEMO_SLUG), now=DEMO_NOW
        )
    analyze()
    return fresh, t.seconds


def analyze() -> None:
    """On PostgreSQL, what autovacuum does soon after a bulk load: without table statistics
    the planner guesses, and a query that takes milliseconds in production can take seconds."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def median_ms(run: Callable[[], object], repeats: int = REPEATS) -> tuple[float, object]:
    """Median wall time of `repeats` calls in milliseconds, and what the last call returned."""
    times = []
    for _ in range(repeats):
        with timer() as t:
            result = run()
        times.append(t.seconds)
    return statistics.median(times) * 1000, result


def measure(kind: str, appointments: int, *, reuse: bool) -> list[str]:
    _, load_seconds = demo_database(kind, appointments, reuse=reuse)
    from django.db import connection

    from careline.analytics.metrics import appointment_metrics, before_and_after
    from careline.clinics.models import Organization, Practice
    from careline.scheduling.models import Appointment

    org = Organization.objects.get(slug=DEMO_SLUG)
    appointments_qs = Appointment.objects.filter(organization=org)
    table = connection.ops.quote_name(Appointment._meta.db_table)

    def count_all() -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            return cursor.fetchone()[0]

    tag = f"[{kind},{appointments}]"
    lines = []
    if load_seconds is not None:
        lines.append(figure(f"reports_demo_generate_s{tag}", load_seconds, None, ".1f"))
    baseline, _ = median_ms(count_all)
    for group_by in GROUPINGS:
        ms, rows = median_ms(partial(appointment_metrics, appointments_qs, group_by=group_by))
        if sum(r.appointments for r in rows) != appointments:
            raise RuntimeError(f"metrics by {group_by} do not add up to {appointments:,}")
        lines.append(figure(f"reports_metrics_by_{group_by}_ms{tag}", ms, baseline, ".2f"))
    practices = list(Practice.objects.filter(organization=org))
    ms, _ = median_ms(lambda: before_and_after(practices))
    lines.append(figure(f"reports_before_and_after_ms{tag}", ms, baseline, ".2f"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.add_argument("--appointments", "--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--reuse-demo", action="store_true", help="use a demo of this size loaded earlier"
    )
    args = parser.parse_args(argv)
    if args.appointments < 1:
        parser.error("--appointments must be positive")
    if args.database == "both":
        return each_database("bench.reports", sys.argv[1:] if argv is None else argv)
    for line in measure(args.database, args.appointments, reuse=args.reuse_demo):
        print(line, flush=True)
    return 0


def each_database(module: str, argv: list[str]) -> int:
    """Run `module` once per database, each in its own process: Django binds one per process."""
    args, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--database="):
            skip = False
            continue
        skip = arg == "--database"
        if not skip:
            args.append(arg)
    codes = [
        subprocess.run(
            [sys.executable, "-m", module, *args, "--database", kind], cwd=REPO
        ).returncode
        for kind in ("sqlite", "postgres")
    ]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
