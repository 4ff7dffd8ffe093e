"""SIU throughput over MLLP: messages per second on one connection and on eight.

Runs against a throwaway database (Django's test database for the configured
DATABASE_URL, SQLite by default) and a listener on a random local port. Every message is
a new appointment (S12) for a new patient, stored raw, applied and acknowledged.
Baseline: a raw bulk insert of the same appointments and patients.

    .venv/bin/python bench/hl7_mllp.py [--messages 2000]

Prints `name | value | baseline | ratio` lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")


def _siu(n: int, prefix: str) -> str:
    start = (datetime(2027, 1, 4, 13, 0, tzinfo=UTC) + timedelta(minutes=20 * n)).strftime(
        "%Y%m%d%H%M%S+0000"
    )
    return (
        "\r".join(
            [
                f"MSH|^~\\&|BENCH|CLINIC|CARELINE|CARELINE|20261201080000||SIU^S12|{prefix}{n}|P|2.5.1",
                f"SCH||{prefix}{n}|||||||20|min|^^20^{start}" + "|" * 14 + "Booked",
                f"PID|1||{prefix}M{n}^^^BENCH^MR||Patient^Bench||19800101|F|||||"
                f"^ORN^CP^^1^518^555{n % 10000:04d}",
                "AIS|1|A|FU20^FOLLOW UP",
                "AIL|1|A|BENCH",
                f"AIP|1|A|DOC{n % 10}^Doctor^Bench",
            ]
        )
        + "\r"
    )


def _send(host: str, port: int, messages: list[str]) -> None:
    from careline.integrations.hl7.mllp import MllpClient

    with MllpClient(host, port) as client:
        for message in messages:
            ack = client.send(message)
            if "MSA|AA|" not in ack:
                raise RuntimeError(f"not accepted: {ack.split(chr(13))[1]}")


def _baseline(count: int, organization, practice, provider, appointment_type) -> float:
    """Rows per second of a plain bulk insert of the same patients and appointments."""
    from django.db import transaction

    from careline.patients.models import Patient
    from careline.scheduling.models import Appointment

    now = datetime.now(UTC)
    started = time.perf_counter()
    with transaction.atomic():
        Patient.objects.bulk_create(
            Patient(organization=organization, mrn=f"BASE{n}", given_name="B", family_name="P")
            for n in range(count)
        )
        ids = dict(Patient.objects.filter(mrn__startswith="BASE").values_list("mrn", "id"))
        Appointment.objects.bulk_create(
            Appointment(
                organization=organization,
                practice=practice,
                provider=provider,
                patient_id=ids[f"BASE{n}"],
                appointment_type=appointment_type,
                start=now + timedelta(minutes=20 * n),
                end=now + timedelta(minutes=20 * n + 20),
                status_changed_at=now,
                status_source="hl7",
                allow_overlap=True,
                external_system="BASE",
                external_id=str(n),
            )
            for n in range(count)
        )
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="per run (default 2000)")
    # The bench runner passes the same options to every benchmark; ignore the others'.
    args, _ = parser.parse_known_args(argv)

    import django

    django.setup()
    from django.db import connection

    from careline.clinics.models import AppointmentType, Organization, Practice, Provider
    from careline.integrations.hl7.mllp import start_background_listener
    from careline.integrations.models import Hl7Feed

    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        org = Organization.objects.create(name="Bench", slug="bench")
        practice = Practice.objects.create(organization=org, name="Bench", code="BENCH")
        Hl7Feed.objects.create(organization=org, name="BENCH", mrn_identifier_type="MR")
        listener = start_background_listener()
        try:
            one = [_siu(n, "A") for n in range(args.messages)]
            started = time.perf_counter()
            _send(listener.host, listener.port, one)
            single = args.messages / (time.perf_counter() - started)

            per = args.messages // 8
            batches = [[_siu(n, f"B{c}-") for n in range(per)] for c in range(8)]
            threads = [
                threading.Thread(target=_send, args=(listener.host, listener.port, b))
                for b in batches
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            eight = per * 8 / (time.perf_counter() - started)
        finally:
            listener.close()
        provider = Provider.objects.filter(organization=org).first()
        appointment_type = AppointmentType.objects.get(organization=org, code="FU20")
        baseline = _baseline(args.messages, org, practice, provider, appointment_type)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    vendor = connection.vendor
    for name, value in (
        (f"hl7_mllp_1_connection_msgs_per_s[{vendor}]", single),
        (f"hl7_mllp_8_connections_msgs_per_s[{vendor}]", eight),
    ):
        print(f"{name} | {value:.1f} | {baseline:.1f} | {value / baseline:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
