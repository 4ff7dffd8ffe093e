"""Re-planning after a rule change: rows/s of moving the planned reminders of N booked
visits when the organization's cadence changes (72 h, 24 h → 48 h, 24 h, saved through
careline.messaging.rules like every door), next to a raw UPDATE of the same outbox rows
in the same run as its baseline (issue 20: at least a quarter of its rate).

    .venv/bin/python -m bench.rule_replanning [--rows 100000] [--database sqlite|postgres]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.reminders_common import make_clinic, parse_args, report, throwaway_database


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    with throwaway_database(args.database) as connection:
        from django.db import transaction

        from careline.messaging.models import OutboundMessage
        from careline.messaging.outbox import OUTBOX
        from careline.messaging.planning import plan_all_reminders
        from careline.messaging.rules import save_default_rule

        now = datetime.now(UTC)
        print(f"# re-planning after a rule change, {args.rows:,} visits, {connection.vendor}")
        org, _ = make_clinic(args.rows, start=now + timedelta(days=4), spread=timedelta(days=30))
        save_default_rule(org, offsets_minutes=[4320, 1440])  # the rule before the change
        plan_all_reminders()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        planned = OutboundMessage.objects.filter(state="scheduled", kind="reminder")
        rows = planned.count()
        # The baseline: one raw UPDATE writing the due time of every one of those rows.
        shift = (
            "datetime(due_at, '+0 minutes')"
            if connection.vendor == "sqlite"
            else "due_at + INTERVAL '0 minutes'"
        )
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {OUTBOX} SET due_at = {shift} "
                "WHERE state = 'scheduled' AND kind = 'reminder' AND organization_id = %s",
                [org.id],
            )
        raw_seconds = time.perf_counter() - started
        started = time.perf_counter()
        save_default_rule(org, offsets_minutes=[2880, 1440])
        replan_seconds = time.perf_counter() - started
        moved = planned.filter(step_key="reminder:2880").count()
        report(
            "re-planning after a rule change: rows/s",
            rows / replan_seconds,
            "rows/s",
            rows / raw_seconds,
        )
        report("re-planning after a rule change: seconds", replan_seconds, "s")
        if moved != args.rows:
            print(f"FAIL: {moved:,} of {args.rows:,} visits have the new 48-hour reminder")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
