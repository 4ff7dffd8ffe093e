"""A broadcast to N patients: its preview, the click that records it, and the worker
queueing its texts.

For each database it makes a fresh migrated database with one practice and N patients
(created in batches: 3% without a mobile number, 2% opted out, 5% sharing a number with
the patient before them, 30% reading Spanish), then times `send_broadcast` to all of the
practice's patients on the fresh load (no ANALYZE: the preview must not need one): the
preview of the whole practice (target: under 2 s), `send_broadcast` (the page's click:
the preview it records, reach and exclusions) and the worker's `queue_broadcasts`, the one
INSERT … SELECT that queues a text per reachable number. The same-run baseline inserts
the very outbox rows it queued again, straight into the same table in one transaction,
rolled back (multi-row INSERTs on SQLite, COPY on PostgreSQL: each database's true limit).

    .venv/bin/python -m bench.broadcast [--rows 100000] [--database sqlite]
"""

from __future__ import annotations

import argparse
import sys

from bench.common import BATCH, copy_rows, figure, fresh_database, multirow_insert, timer
from bench.reports import each_database, use_database

BODY_EN = "{first_name}, {practice} is closed Friday for staff training. Reply R to reschedule."
BODY_ES = "{first_name}, {practice} cierra el viernes por capacitación. Responda R para cambiar."


def _patients(rows: int):
    """One organization and practice with `rows` patients; returns (organization, practice)."""
    from django.utils import timezone

    from careline.clinics.models import Organization, Practice
    from careline.patients.models import ConsentSource, Language, Patient, PhoneConsent

    org = Organization.objects.create(
        name="Bench Health", slug="bench-broadcast", default_sender_number="+15125550100"
    )
    practice = Practice.objects.create(organization=org, name="Bench Clinic", code="B")
    now = timezone.now()
    for low in range(0, rows, BATCH):
        patients, consents = [], []
        for n in range(low, min(rows, low + BATCH)):
            # Every 20th patient shares the number of the one before (a family).
            number = n - 1 if n % 20 == 19 else n
            phone = "" if n % 33 == 0 else f"+1512{number:07d}"
            patients.append(
                Patient(
                    organization=org,
                    home_practice=practice,
                    given_name=f"Pat{n}",
                    family_name="Bench",
                    preferred_language=Language.SPANISH if n % 10 < 3 else Language.ENGLISH,
                    mobile_phone=phone,
                )
            )
            if phone and n % 50 == 1:
                consents.append(
                    PhoneConsent(
                        organization=org,
                        phone=phone,
                        opted_out=True,
                        source=ConsentSource.PATIENT_TEXT,
                        changed_at=now,
                    )
                )
        Patient.objects.bulk_create(patients)
        PhoneConsent.objects.bulk_create(consents)
    return org, practice


def _raw_insert_seconds(connection, broadcast_id: int) -> float:
    """Seconds to insert the broadcast's outbox rows once more, rolled back afterwards."""
    from django.db import transaction

    from careline.messaging.models import OutboundMessage

    columns = [f.column for f in OutboundMessage._meta.concrete_fields if not f.primary_key]
    table = OutboundMessage._meta.db_table
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quoted} FROM {table} WHERE broadcast_id = %s", [broadcast_id])
        rows = cursor.fetchall()
    names = [connection.ops.quote_name(c) for c in columns]
    with transaction.atomic():
        with timer() as t, connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                copy_rows(cursor.cursor, table, names, rows)
            else:
                multirow_insert(cursor, table, names, rows)
        transaction.set_rollback(True)
    return t.seconds


def measure(kind: str, rows: int) -> list[str]:
    use_database(fresh_database(kind, "careline_bench_broadcast"))
    from django.db import connection

    from careline.broadcasts.models import Broadcast
    from careline.broadcasts.sending import Audience, preview, queue_broadcasts, send_broadcast
    from careline.messaging.models import OutboundMessage

    org, practice = _patients(rows)
    # No ANALYZE here: the preview must be fast on a fresh load with no manual step.
    audience = Audience(practice_ids=(practice.pk,))
    with timer() as looked:
        summary = preview(org.pk, audience)
    with timer() as clicked:
        broadcast = send_broadcast(
            organization_id=org.pk,
            audience=audience,
            name="Closed Friday",
            body_en=BODY_EN,
            body_es=BODY_ES,
        )
    # The worker's part: the texts, one INSERT … SELECT.
    with timer() as t:
        queue_broadcasts()
    broadcast = Broadcast.objects.get(pk=broadcast.pk)
    queued = OutboundMessage.objects.filter(broadcast_id=broadcast.pk).count()
    if not queued or queued != broadcast.recipients or queued != summary.reach:
        raise RuntimeError(f"queued {queued:,} texts for {broadcast.recipients:,} recipients")
    print(
        f"# {kind}: {rows:,} patients, {queued:,} texts queued, excluded {broadcast.excluded}",
        flush=True,
    )
    raw = _raw_insert_seconds(connection, broadcast.pk)
    tag = f"[{kind},{rows}]"
    return [
        figure(f"broadcast_preview_whole_practice_s{tag}", looked.seconds, None, ".2f"),
        figure(f"broadcast_click_to_recorded_s{tag}", clicked.seconds, None, ".2f"),
        figure(f"broadcast_worker_queue_s{tag}", t.seconds, raw, ".2f"),
        figure(f"broadcast_queued_rows_per_s{tag}", queued / t.seconds, queued / raw),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__)
    parser.add_argument("--rows", "--patients", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be positive")
    if args.database == "both":
        return each_database("bench.broadcast", sys.argv[1:] if argv is None else argv)
    for line in measure(args.database, args.rows):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
