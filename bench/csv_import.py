"""CSV import throughput: rows per second and the growth of peak anonymous memory (see
bench.common.anonymous_memory_mib) for 10^5 (or 10^6) rows.

Runs against a throwaway database (Django's test database for the configured
DATABASE_URL, SQLite by default). The file has one appointment per row for 1 patient in
4 rows (so patients are both created and matched), 20 providers, 3 practices.
Baseline: a raw bulk insert of the same patients and appointments, batch by batch.
Then the same file is imported again (reminder planning on, as the command does): the
re-import of unchanged rows must write no row, in at most a tenth of the first import's
time (issue 21); its figure's baseline is the first import's seconds.

    .venv/bin/python bench/csv_import.py [--rows 1000000]

Prints `name | value | baseline | ratio` lines.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")

PRACTICES = ("ALB", "TROY", "SCH")
HEADER = [
    "appointment_id",
    "practice",
    "provider",
    "mrn",
    "given_name",
    "family_name",
    "mobile_phone",
    "appointment_type",
    "start",
    "duration_minutes",
]


def _write_file(path: Path, rows: int) -> None:
    first = datetime(2027, 1, 4, 8, 0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(rows):
            start = first + timedelta(minutes=20 * (n // 20))
            writer.writerow(
                [
                    f"E{n}",
                    PRACTICES[n % 3],
                    f"Dr. Provider{n % 20}",
                    f"M{n // 4}",
                    "Pat",
                    f"Example{n % 97}",
                    f"(518) 555-{n % 10000:04d}",
                    "FU20",
                    start.strftime("%Y-%m-%d %H:%M"),
                    "20",
                ]
            )


def _baseline(rows: int, organization, practices, provider, appointment_type) -> float:
    from django.db import transaction

    from careline.patients.models import Patient
    from careline.scheduling.models import Appointment

    batch = 2000
    now = datetime.now(UTC)
    started = time.perf_counter()
    with transaction.atomic():
        for low in range(0, rows, batch):
            high = min(rows, low + batch)
            Patient.objects.bulk_create(
                Patient(organization=organization, mrn=f"B{n}", given_name="P", family_name="E")
                for n in range(low // 4, (high + 3) // 4)
                if n * 4 >= low
            )
            ids = dict(
                Patient.objects.filter(
                    organization=organization, mrn__in=[f"B{n // 4}" for n in range(low, high)]
                ).values_list("mrn", "id")
            )
            Appointment.objects.bulk_create(
                Appointment(
                    organization=organization,
                    practice=practices[n % 3],
                    provider=provider,
                    patient_id=ids[f"B{n // 4}"],
                    appointment_type=appointment_type,
                    start=now + timedelta(minutes=20 * n),
                    end=now + timedelta(minutes=20 * n + 20),
                    status_changed_at=now,
                    status_source="csv",
                    allow_overlap=True,
                    external_system="baseline",
                    external_id=str(n),
                )
                for n in range(low, high)
            )
    return rows / (time.perf_counter() - started)


class _count_writes:
    """Counts INSERT, UPDATE and DELETE statements run inside the `with` block."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self.count += 1
        return execute(sql, params, many, context)

    def __enter__(self):
        from django.db import connection

        self._hook = connection.execute_wrapper(self)
        self._hook.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hook.__exit__(*exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="default 100000; try 1000000")
    # The bench runner passes the same options to every benchmark; ignore the others'.
    args, _ = parser.parse_known_args(argv)

    import django

    django.setup()
    from django.db import connection

    from bench.common import peak_anonymous_memory
    from careline.clinics.models import AppointmentType, Organization, Practice, Provider
    from careline.integrations.csv.importer import import_csv

    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        org = Organization.objects.create(name="Bench", slug="bench")
        practices = [
            Practice.objects.create(organization=org, name=code, code=code) for code in PRACTICES
        ]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "visits.csv"
            _write_file(path, args.rows)
            with peak_anonymous_memory() as memory:
                started = time.perf_counter()
                report = import_csv(path, org, plan_reminders=False)
                elapsed = time.perf_counter() - started
            if report.invalid or report.created != args.rows:
                raise RuntimeError(f"import went wrong: {report}")
            # The same file again, as a nightly export re-sends it: nothing to write and
            # nothing to re-plan (planning on, as the command does).
            writes = _count_writes()
            with writes:
                started = time.perf_counter()
                again = import_csv(path, org)
                reimport_elapsed = time.perf_counter() - started
            if again.created or again.updated or again.unchanged != args.rows:
                raise RuntimeError(f"re-import changed rows: {again}")
        baseline = _baseline(
            args.rows,
            org,
            practices,
            Provider.objects.filter(organization=org).first(),
            AppointmentType.objects.get(organization=org, code="FU20"),
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    rate = args.rows / elapsed
    vendor = connection.vendor
    print(
        f"csv_import_rows_per_s[{vendor},{args.rows}] | {rate:.0f} | {baseline:.0f} | "
        f"{rate / baseline:.3f}"
    )
    # Target (issue 21): at most a tenth of the first import's time, and no row written.
    print(
        f"csv_reimport_unchanged_s[{vendor},{args.rows}] | {reimport_elapsed:.2f} | "
        f"{elapsed:.2f} | {reimport_elapsed / elapsed:.3f}"
    )
    print(f"csv_reimport_unchanged_rows_written[{vendor},{args.rows}] | {writes.count} | - | -")
    # The growth shows whether memory follows the row count (see anonymous_memory_mib).
    print(
        f"csv_import_peak_anon_growth_mib[{vendor},{args.rows}] | {memory.growth_mib:.1f} | - | -"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
