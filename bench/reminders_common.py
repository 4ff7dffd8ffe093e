"""Shared set-up for the messaging benchmarks: a throwaway database and a clinic with
many patients and appointments, created in bulk."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")
BATCH = 10_000


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=100_000, help="appointments / messages")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="percent of patients in a running holdout experiment (0: none)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    return args


@contextmanager
def throwaway_database(kind: str):
    """Django's test database for SQLite or the local PostgreSQL, dropped afterwards."""
    if kind == "postgres" and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        url = (
            subprocess.run(
                [str(ROOT / "scripts" / "postgres.sh")], check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        os.environ["DATABASE_URL"] = url
    elif kind == "sqlite":
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("CARELINE_DATA_DIR", "/tmp/careline-bench")
    os.environ.setdefault("CARELINE_SMS_GATEWAY", "simulator")
    Path(os.environ["CARELINE_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield connection
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def daytime_zone() -> str:
    """A practice time zone where it is now mid-day, so sending hours never interfere."""
    from zoneinfo import ZoneInfo

    for zone in [
        "America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Asia/Tokyo",
        "Asia/Kolkata", "Europe/Berlin", "Australia/Sydney", "America/Sao_Paulo",
    ]:  # fmt: skip
        if 9 <= datetime.now(ZoneInfo(zone)).hour < 19:
            return zone
    return "UTC"


def make_clinic(rows: int, *, start: datetime, spread: timedelta, before_visits=None):
    """An organization with `rows` patients, each with one booked appointment between
    `start` and `start + spread` (`before_visits(organization)` is called before they are
    made). Returns (organization, practice)."""
    from careline.clinics.models import AppointmentType, Organization, Practice, Provider
    from careline.patients.models import Patient
    from careline.scheduling.models import Appointment

    org = Organization.objects.create(
        name="Bench Health", slug=f"bench-{time.time_ns()}", default_sender_number="+15125550100"
    )
    practice = Practice.objects.create(
        organization=org, name="Bench Clinic", code="B", time_zone=daytime_zone()
    )
    provider = Provider.objects.create(organization=org, display_name="Dr. Bench")
    visit = AppointmentType.objects.create(
        organization=org, code="V", name="Visit", patient_facing_name="Visit"
    )
    if before_visits is not None:
        before_visits(org)
    now = datetime.now(UTC)
    step = spread / rows
    for low in range(0, rows, BATCH):
        high = min(rows, low + BATCH)
        patients = Patient.objects.bulk_create(
            Patient(
                organization=org,
                home_practice=practice,
                given_name=f"P{n}",
                family_name="Bench",
                mobile_phone=f"+1{2000000000 + n}",
            )
            for n in range(low, high)
        )
        Appointment.objects.bulk_create(
            Appointment(
                organization=org,
                practice=practice,
                provider=provider,
                patient=p,
                appointment_type=visit,
                start=start + step * n,
                end=start + step * n + timedelta(minutes=20),
                status_changed_at=now,
                status_source="hl7",
                allow_overlap=True,
            )
            for n, p in zip(range(low, high), patients, strict=True)
        )
    return org, practice


def _figure_text(value: float) -> str:
    # Three decimals below 100: a growth ratio is taken from these printed figures, and
    # 0.14 s printed as 0.1 s would make x11 look like x16.
    return f"{value:>12,.3f}" if abs(value) < 100 else f"{value:>12,.1f}"


def report(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    line = f"{name:<48} | {_figure_text(value)} {unit:<10}"
    if baseline:
        line += f" | baseline {_figure_text(baseline)} | ratio {value / baseline:5.2f}"
    print(line, flush=True)
