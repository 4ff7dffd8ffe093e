"""Planning reminders set-based: rows per second of plan_all_reminders() over N upcoming
appointments, next to a raw bulk insert of the same outbox rows into the same database;
then re-planning the same data (must add nothing). On PostgreSQL the tables are vacuumed
and analyzed before the re-plan, as autovacuum keeps them in a running system: the
baseline's deletes and reloads would otherwise leave millions of dead rows that no real
outbox has. (Not before the first plan: statistics of an empty outbox, taken just before
a million rows go in, would be as misleading as none.)

    .venv/bin/python -m bench.reminders_planning [--rows 100000] [--database sqlite|postgres]
        [--holdout 10]

With --holdout, an organization-wide holdout experiment runs while planning: every
patient's arm is drawn in the same set-based pass, and the realised share is reported.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.common import copy_rows, multirow_insert
from bench.reminders_common import BATCH, make_clinic, parse_args, report, throwaway_database


def _raw_insert_rate(connection) -> float:
    """Rows/s of the true bulk-insert limit (COPY on PostgreSQL, multi-row INSERTs on
    SQLite, in one transaction) of the very rows planning produced, into the same
    (emptied) table with the same indexes; the rows are removed again afterwards. The rows
    wait in a temporary table and are streamed from it, so memory does not grow with their
    number; only the inserts are timed."""
    from django.db import transaction

    from careline.messaging.outbox import COLUMNS, OUTBOX

    columns = ", ".join(COLUMNS)

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE bench_planned AS SELECT {columns} FROM {OUTBOX}")
        cursor.execute(f"DELETE FROM {OUTBOX}")
    elapsed, count = 0.0, 0
    with transaction.atomic():
        with connection.chunked_cursor() as source, connection.cursor() as cursor:
            source.execute(f"SELECT {columns} FROM bench_planned")
            while rows := source.fetchmany(BATCH):
                started = time.perf_counter()
                if connection.vendor == "postgresql":
                    copy_rows(cursor.cursor, OUTBOX, COLUMNS, rows)
                else:
                    multirow_insert(cursor, OUTBOX, COLUMNS, rows)
                elapsed += time.perf_counter() - started
                count += len(rows)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {OUTBOX}")
        cursor.execute("DROP TABLE bench_planned")
    return count / elapsed


def _settle(connection) -> None:
    """VACUUM ANALYZE on PostgreSQL (see the module docstring); nothing on SQLite."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    with throwaway_database(args.database) as connection:
        from careline.messaging.models import OutboundMessage
        from careline.messaging.planning import plan_all_reminders

        now = datetime.now(UTC)
        print(f"# reminders planning, {args.rows:,} appointments, {connection.vendor}")
        org, practice = make_clinic(
            args.rows,
            start=now + timedelta(days=4),
            spread=timedelta(days=30),
            before_visits=_holdout(args.holdout),
        )
        started = time.perf_counter()
        plan_all_reminders()
        planning_seconds = time.perf_counter() - started
        planned = OutboundMessage.objects.count()
        baseline = _raw_insert_rate(connection)
        plan_all_reminders()  # again, for the re-plan figure on the same data
        _settle(connection)
        started = time.perf_counter()
        plan_all_reminders()
        replan_seconds = time.perf_counter() - started
        added = OutboundMessage.objects.count() - planned
        report("planning: outbox rows/s", planned / planning_seconds, "rows/s", baseline)
        report("planning: seconds", planning_seconds, "s")
        report("re-planning the same data: seconds", replan_seconds, "s")
        report("re-planning the same data: rows added", added, "rows")
        if args.holdout:
            from careline.messaging.models import ExperimentArm, PatientAssignment

            drawn = PatientAssignment.objects.count()
            withheld = PatientAssignment.objects.filter(arm=ExperimentArm.WITHHELD).count()
            report(f"holdout {args.holdout}%: patients drawn", drawn, "patients")
            report("holdout: realised share, percent", 100 * withheld / max(drawn, 1), "%")
        if added:
            print("FAIL: re-planning added rows")
            return 1
    return 0


def _holdout(percent: int):
    """What to do once the organization exists: start the experiment (its visits must be
    booked after it starts)."""
    if not percent:
        return None

    def start(org) -> None:
        from careline.messaging.experiments import start_experiment

        start_experiment(
            organization_id=org.id,
            practice_id=None,
            name="Bench holdout",
            withheld_step="all",
            share_basis_points=percent * 100,
        )

    return start


if __name__ == "__main__":
    raise SystemExit(main())
