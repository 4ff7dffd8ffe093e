"""Placing reminder calls: N due calls through the Twilio gateway (the real `twilio`
client) against the local fake Twilio server, at the configured calls-per-second limit.

Figures: the rate at which the fake server received Calls.create requests, next to the
configured limit (target: within 2%), and the worker's CPU per call. Calling hours are
the real ones (the clinic's zone is one where it is now daytime).

    .venv/bin/python -m bench.voice_dispatch [--rows 10000] [--cps 50] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from bench.reminders_common import BATCH, make_clinic, report, throwaway_database

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-voice-token"
TOLERANCE = 0.02
WARM_UP = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="calls to place")
    parser.add_argument("--cps", type=float, default=50.0, help="calls per second limit")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    if args.rows < WARM_UP + 2 or args.cps <= 0:
        parser.error(f"--rows must be at least {WARM_UP + 2} and --cps above 0")
    return args


def _due_calls(now: datetime) -> int:
    """One reminder call per appointment, due a minute ago."""
    from careline.messaging.models import Channel, OutboundMessage
    from careline.scheduling.models import Appointment

    rows = Appointment.objects.order_by("id").values_list(
        "id", "organization_id", "practice_id", "patient_id", "start", "patient__mobile_phone"
    )
    batch, count = [], 0
    for pk, org, practice, patient, start, phone in rows.iterator(chunk_size=BATCH):
        batch.append(
            OutboundMessage(
                organization_id=org,
                practice_id=practice,
                patient_id=patient,
                appointment_id=pk,
                channel=Channel.VOICE,
                to_address=phone,
                sender="+15125550100",
                kind="reminder",
                step_key="reminder:1440",
                visit_start=start,
                due_at=now - timedelta(minutes=1),
                expires_at=start,
                created_at=now,
            )  # fmt: skip
        )
        if len(batch) == BATCH:
            count += len(OutboundMessage.objects.bulk_create(batch))
            batch = []
    return count + len(OutboundMessage.objects.bulk_create(batch))


def _serve_fake(conn) -> None:
    from tests.messaging.fake_twilio import running_fake_twilio

    with running_fake_twilio(ACCOUNT_SID, AUTH_TOKEN, keep_alive=True) as fake:
        conn.send(fake.base_url)
        conn.recv()  # until the run is over
        conn.send(sorted(call["_at"] for call in fake.calls.values()))


@contextmanager
def fake_twilio_process():
    """The fake Twilio in a process of its own, as Twilio is another machine: it must not
    share the worker's interpreter lock. Yields (base URL, a function returning the
    monotonic arrival times of the Calls.create requests once the run is over)."""
    here, there = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve_fake, args=(there,))
    process.start()
    try:
        base_url = here.recv()

        def arrivals() -> list[float]:
            here.send("done")
            return here.recv()

        yield base_url, arrivals
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with throwaway_database(args.database) as connection:
        from django.conf import settings

        from careline.messaging.dispatch import Dispatcher
        from careline.messaging.gateways.twilio import TwilioGateway
        from careline.messaging.models import OutboundMessage

        print(f"# voice dispatch, {args.rows:,} calls at {args.cps:g}/s, {connection.vendor}")
        now = datetime.now(UTC)
        make_clinic(args.rows, start=now + timedelta(days=1), spread=timedelta(hours=12))
        _due_calls(now)
        with fake_twilio_process() as (base_url, received):
            settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
            settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
            settings.TWILIO_API_BASE_URL = base_url
            settings.CARELINE_CALLS_PER_SECOND = args.cps
            # A quarter second's calls per claim, as the dispatcher does for texts.
            dispatcher = Dispatcher(TwilioGateway(), batch_size=max(1, int(args.cps / 4)))
            started, cpu = time.perf_counter(), time.process_time()
            stats = dispatcher.run_once()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            arrivals = received()
        placed = OutboundMessage.objects.filter(state="sent", channel="voice").count()
        if placed != args.rows or len(arrivals) != args.rows:
            print(f"FAIL: {placed} of {args.rows} placed, {len(arrivals)} reached Twilio: "
                  f"{dict(stats)}")  # fmt: skip
            return 1
        # From the WARM_UP-th call on: the first requests also open the client's connection.
        actual = (len(arrivals) - 1 - WARM_UP) / (arrivals[-1] - arrivals[WARM_UP])
        report("calls placed: actual calls/s", actual, "calls/s", args.cps)
        report("calls placed: seconds", elapsed, "s")
        report("calls placed: worker CPU ms per call", cpu * 1000 / args.rows, "ms")
        if abs(actual / args.cps - 1) > TOLERANCE:
            print(f"FAIL: {actual:.2f} calls/s is not within 2% of {args.cps:g}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
