"""Dispatching due reminders through the simulator gateway.

Figures: messages/s with no rate limit over N due reminders (rendering, the compliance
gate, the simulated send and the bookkeeping included), next to a raw bulk insert of the
same outbox rows; the actual rate with a limit of 1, 3, 10 and 100 segments/s on one
sender; and the delay from due to sent (p50/p99) for messages falling due steadily. The N
sent messages stay in the outbox (dated two days back, so the per-patient cap ignores
them) while the rate-limited and steady runs go on, so every figure is taken with N rows.

    .venv/bin/python -m bench.dispatch [--rows 100000] [--database sqlite|postgres]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.reminders_common import BATCH, make_clinic, parse_args, report, throwaway_database

RATE_LIMITS = (1, 3, 10, 100)
RATE_SECONDS = 5  # how long each rate-limited run lasts
BASELINE_ROWS = 100_000  # enough for a stable rate, and memory stays bounded


def _due_reminders(due: list[datetime], step_key: str = "reminder:1440") -> None:
    """One planned reminder per appointment (oldest first), due at the given times."""
    from careline.messaging.models import OutboundMessage
    from careline.scheduling.models import Appointment

    ids = (
        Appointment.objects.order_by("id")
        .values_list(
            "id", "organization_id", "practice_id", "patient_id", "start", "patient__mobile_phone"
        )
        .iterator(chunk_size=BATCH)
    )
    now = datetime.now(UTC)
    batch = []
    for (pk, org, practice, patient, start, phone), due_at in zip(ids, due, strict=False):
        batch.append(
            OutboundMessage(
                organization_id=org,
                practice_id=practice,
                patient_id=patient,
                appointment_id=pk,
                to_address=phone,
                sender="+15125550100",
                kind="reminder",
                step_key=step_key,
                visit_start=start,
                due_at=due_at,
                expires_at=start,
                created_at=now,
            )  # fmt: skip
        )
        if len(batch) == BATCH:
            OutboundMessage.objects.bulk_create(batch)
            batch = []
    OutboundMessage.objects.bulk_create(batch)


def _raw_insert_rate(connection, count: int) -> float:
    """Rows/s of a raw executemany insert of copies of up to BASELINE_ROWS outbox rows
    (rolled back): a yardstick for the database and the machine, not a target."""
    from django.db import transaction

    from careline.messaging.outbox import COLUMNS, OUTBOX

    columns = ", ".join(COLUMNS)

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {OUTBOX} ORDER BY id LIMIT %s",
            [min(count, BASELINE_ROWS)],
        )
        # Another step key, so the copies do not collide with the originals' unique key.
        step = COLUMNS.index("step_key")
        rows = [r[:step] + ("baseline",) + r[step + 1 :] for r in cursor.fetchall()]
    placeholders = ", ".join(["%s"] * len(rows[0]))
    sql = f"INSERT INTO {OUTBOX} ({columns}) VALUES ({placeholders})"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for low in range(0, len(rows), BATCH):
            cursor.executemany(sql, rows[low : low + BATCH])
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return len(rows) / elapsed


def _into_history(step_key: str) -> None:
    """Date a run's sends two days back: they stay in the table, out of the daily cap."""
    from django.db.models import F

    from careline.messaging.models import OutboundMessage

    OutboundMessage.objects.filter(step_key=step_key).update(
        sent_at=F("sent_at") - timedelta(days=2)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    with throwaway_database(args.database) as connection:
        from careline.messaging.dispatch import Dispatcher
        from careline.messaging.gateways.simulator import SimulatorGateway
        from careline.messaging.models import OutboundMessage
        from careline.messaging.ratelimit import SenderRateLimiter

        print(f"# dispatch, {args.rows:,} due messages, {connection.vendor}")
        now = datetime.now(UTC)
        make_clinic(args.rows, start=now + timedelta(days=2), spread=timedelta(days=5))
        gateway = SimulatorGateway()

        _due_reminders([now - timedelta(minutes=1)] * args.rows)
        baseline = _raw_insert_rate(connection, args.rows)
        started, cpu = time.perf_counter(), time.process_time()
        stats = Dispatcher(gateway).run_once()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        sent = OutboundMessage.objects.filter(state="delivered").count()
        report("no rate limit: messages/s", sent / elapsed, "msg/s", baseline)
        report("no rate limit: seconds", elapsed, "s")
        # The machine may be shared: the worker's own CPU time shows what load hides.
        report("no rate limit: worker CPU ms per message", cpu * 1000 / args.rows, "ms")
        if sent != args.rows:
            print(f"FAIL: {sent} of {args.rows} delivered: {dict(stats)}")
            return 1

        _into_history("reminder:1440")

        for rate in RATE_LIMITS:
            step = f"rate:{rate}"
            count = max(5, int(rate * RATE_SECONDS)) + 1
            _due_reminders([now - timedelta(minutes=1)] * count, step)
            dispatcher = Dispatcher(gateway, limiter=SenderRateLimiter(rate))
            dispatcher.run_once()
            run = OutboundMessage.objects.filter(step_key=step)
            times = sorted(run.filter(state="delivered").values_list("sent_at", flat=True))
            segments = sum(run.values_list("segments", flat=True))
            last_segments = run.order_by("-sent_at").first().segments
            span = (times[-1] - times[0]).total_seconds()
            actual = (segments - last_segments) / span
            report(f"rate limit {rate} segments/s: actual", actual, "seg/s", rate)
            _into_history(step)

        step = "steady"
        count = min(args.rows, 5000)
        spread = count / 500  # falling due at 500 messages/s
        start = datetime.now(UTC) + timedelta(seconds=1)
        _due_reminders([start + timedelta(seconds=spread * i / count) for i in range(count)], step)
        dispatcher = Dispatcher(gateway, batch_size=50)
        deadline = time.monotonic() + spread + 60
        while OutboundMessage.objects.filter(state="scheduled").exists():
            if time.monotonic() > deadline:
                print("FAIL: messages still due after the deadline")
                return 1
            if not sum(dispatcher.run_once().values()):
                time.sleep(0.05)
            dispatcher.stats.clear()
        delays = sorted(
            (sent_at - due_at).total_seconds()
            for due_at, sent_at in OutboundMessage.objects.filter(step_key=step).values_list(
                "due_at", "sent_at"
            )
        )
        report("due to sent (500 msg/s falling due): p50", delays[len(delays) // 2], "s")
        report("due to sent (500 msg/s falling due): p99", delays[int(len(delays) * 0.99)], "s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
