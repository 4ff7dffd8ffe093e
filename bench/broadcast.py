"""A broadcast to N patients: its preview, the click that records it, and the worker
counting its audience and queueing its texts.

For each database it makes a fresh migrated database with one practice and N patients
(created in batches: 3% without a mobile number, 2% opted out, 5% sharing a number with
the patient before them, 30% reading Spanish), then, through the staff pages (Django's
test Client) on the fresh load (no ANALYZE: nothing may need one), times the preview
request of the whole practice (target: under 2 s; an audience over
CARELINE_BROADCAST_INLINE_COUNT is left for the worker), the worker counting it
(`previews.count_waiting`), the click that records the broadcast, and the worker's
`queue_broadcasts` (the count of an uncounted broadcast, then the one INSERT … SELECT that
queues a text per reachable number). While the worker counts and queues (in a thread),
the day view (target: under 1 s) and signed Twilio texts are requested one after another:
their slowest answers, and the share of texts stored (the rest answered a fast 503). The
same-run baseline inserts the very outbox rows it queued again, straight into the same
table in one transaction, rolled back (multi-row INSERTs on SQLite, COPY on PostgreSQL:
each database's true limit).

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


TOKEN = "bench-broadcast-token"
BASE = "https://careline.example.org"
SMS_PATH = "/webhooks/twilio/sms"


class _Meanwhile:
    """The day view and signed Twilio texts, requested one after another while `work` runs
    in a thread (the worker counting and queueing): their slowest answers and statuses."""

    def __init__(self, client, day_view: str, phones: list[str], to_number: str) -> None:
        self.client, self.day_view = client, day_view
        self.phones, self.to_number = phones, to_number
        self.day_view_s: list[float] = []
        self.webhook_s: list[float] = []
        self.statuses: dict[int, int] = {}

    def _text(self, n: int):
        from twilio.request_validator import RequestValidator

        params = {
            "MessageSid": f"SM{n:032x}",
            "AccountSid": "AC" + "0" * 32,
            "From": self.phones[n % len(self.phones)],
            "To": self.to_number,
            "Body": "YES",
            "NumMedia": "0",
        }
        signature = RequestValidator(TOKEN).compute_signature(BASE + SMS_PATH, params)
        with timer() as t:
            response = self.client.post(SMS_PATH, params, HTTP_X_TWILIO_SIGNATURE=signature)
        self.webhook_s.append(t.seconds)
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1

    def run(self, work) -> float:
        """Seconds `work` took in its thread."""
        import threading

        from django.db import connection

        took: list[float] = []

        def background() -> None:
            try:
                with timer() as t:
                    work()
                took.append(t.seconds)
            finally:
                connection.close()

        thread = threading.Thread(target=background)
        thread.start()
        n = len(self.webhook_s)
        while thread.is_alive():
            with timer() as t:
                page = self.client.get(self.day_view)
            if page.status_code != 200:
                raise RuntimeError(f"the day view answered {page.status_code}")
            self.day_view_s.append(t.seconds)
            self._text(n)
            n += 1
        thread.join()
        return took[0]


def measure(kind: str, rows: int) -> list[str]:
    use_database(fresh_database(kind, "careline_bench_broadcast"))
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from careline.broadcasts.models import Broadcast, BroadcastPreview
    from careline.broadcasts.previews import count_waiting, counted
    from careline.broadcasts.sending import Audience, preview, queue_broadcasts
    from careline.messaging.models import OutboundMessage

    settings.TWILIO_AUTH_TOKEN, settings.CARELINE_BASE_URL = TOKEN, BASE
    org, practice = _patients(rows)
    # No ANALYZE here: the preview must be fast on a fresh load with no manual step.
    admin = get_user_model().objects.create_superuser("bench-admin", "", "x")
    client = Client()
    client.force_login(admin)
    form = {
        "name": "Closed Friday",
        "practices": [practice.pk],
        "body_en": BODY_EN,
        "body_es": BODY_ES,
    }
    # The compose page as the sender opens it (the process's first request loads templates).
    client.get("/broadcasts/new/")
    # The preview request answers at once; a large audience is counted by the worker.
    with timer() as looked:
        page = client.post("/broadcasts/new/", {**form, "action": "preview"}, HTTP_HX_REQUEST="1")
    if page.status_code != 200:
        raise RuntimeError(f"the preview page answered {page.status_code}")
    phones = [f"+1512{n:07d}" for n in range(0, min(rows, 500), 7) if n % 33]
    meanwhile = _Meanwhile(
        client,
        f"/schedule/{practice.pk}/{timezone.localdate().isoformat()}/",
        phones,
        org.default_sender_number,
    )
    waiting = BroadcastPreview.objects.filter(counted_at__isnull=True).exists()
    counting = meanwhile.run(count_waiting) if waiting else 0.0
    record = BroadcastPreview.objects.first()
    summary = counted(record) if record else preview(org.pk, Audience(practice_ids=(practice.pk,)))
    with timer() as clicked:
        sent = client.post("/broadcasts/new/", {**form, "action": "send"})
    if sent.status_code != 302:
        raise RuntimeError(f"sending answered {sent.status_code}")
    broadcast = Broadcast.objects.get()
    # The worker's part: count an uncounted broadcast, then the texts in one INSERT … SELECT.
    queueing = meanwhile.run(queue_broadcasts)
    broadcast = Broadcast.objects.get(pk=broadcast.pk)
    queued = OutboundMessage.objects.filter(broadcast_id=broadcast.pk).count()
    if not queued or queued != broadcast.recipients or queued != summary.reach:
        raise RuntimeError(
            f"queued {queued:,} texts for {broadcast.recipients} recipients, "
            f"previewed {summary.reach:,}"
        )
    print(
        f"# {kind}: {rows:,} patients, {queued:,} texts queued, excluded {broadcast.excluded}; "
        f"meanwhile {len(meanwhile.day_view_s)} day views, webhook answers {meanwhile.statuses}",
        flush=True,
    )
    raw = _raw_insert_seconds(connection, broadcast.pk)
    tag = f"[{kind},{rows}]"
    stored = meanwhile.statuses.get(200, 0)
    return [
        figure(f"broadcast_preview_whole_practice_s{tag}", looked.seconds, None, ".2f"),
        figure(f"broadcast_preview_counted_by_worker_s{tag}", counting, None, ".2f"),
        figure(f"broadcast_click_to_recorded_s{tag}", clicked.seconds, None, ".2f"),
        figure(f"broadcast_worker_queue_s{tag}", queueing, raw, ".2f"),
        figure(f"broadcast_queued_rows_per_s{tag}", queued / queueing, queued / raw),
        figure(
            f"broadcast_day_view_during_worker_max_s{tag}",
            max(meanwhile.day_view_s, default=0.0),
            None,
            ".2f",
        ),
        figure(
            f"broadcast_webhook_during_worker_max_s{tag}",
            max(meanwhile.webhook_s, default=0.0),
            None,
            ".2f",
        ),
        figure(
            f"broadcast_webhook_during_worker_stored_share{tag}",
            stored / max(1, sum(meanwhile.statuses.values())),
            None,
            ".2f",
        ),
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
