"""Every bulk path leaves the planner fresh statistics (issue 21): `careline demo` (and its
planning of reminders), `careline import-csv` and `careline import-hl7`. Without them the
first queries over a fresh load are planned blind (a broadcast preview took 119 s)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from tests.integrations.conftest import feeds, sample  # noqa: F401 (fixture)
from tests.integrations.test_csv_import import GOOD, _write


def _forget_statistics(*tables: str) -> None:
    """Drop what the database knows about these tables (inside the test's transaction)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
            if cursor.fetchone():
                for table in tables:
                    cursor.execute("DELETE FROM sqlite_stat1 WHERE tbl = %s", [table])
        else:
            for table in tables:
                cursor.execute("DELETE FROM pg_statistic WHERE starelid = %s::regclass", [table])


def _has_statistics(table: str) -> bool:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
            if not cursor.fetchone():
                return False
            cursor.execute("SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = %s", [table])
        else:
            cursor.execute(
                "SELECT COUNT(*) FROM pg_statistic WHERE starelid = %s::regclass", [table]
            )
        return cursor.fetchone()[0] > 0


LOADED = ("scheduling_appointment", "patients_patient", "messaging_outboundmessage")


@pytest.mark.django_db
def test_demo_and_its_planning_leave_statistics(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    _forget_statistics(*LOADED)
    call_command(
        "demo",
        "--practices=2",
        "--providers=4",
        "--patients=300",
        "--appointments=1500",
        "--verbosity=0",
    )
    assert [t for t in LOADED if not _has_statistics(t)] == []


def test_csv_import_leaves_statistics(feeds, tmp_path):  # noqa: F811
    _forget_statistics(*LOADED)
    call_command(
        "import-csv",
        str(_write(tmp_path, *GOOD)),
        "--organization",
        "capital-health",
        "--no-progress",
    )
    assert [t for t in LOADED if not _has_statistics(t)] == []


def test_hl7_batch_file_leaves_statistics(feeds, tmp_path):  # noqa: F811
    _forget_statistics(*LOADED)
    path = tmp_path / "feed.hl7"
    path.write_bytes(sample("01-s12-new-athena-style.hl7").encode())
    call_command("import-hl7", str(path))
    # The sample's visit is long past: it plans no message, the outbox stays empty.
    assert [t for t in LOADED[:2] if not _has_statistics(t)] == []
