"""Upgrading: MRNs stored before identifiers had systems become identifiers.

Runs `careline migrate` in its own process and SQLite file: the database is migrated to
just before the change, filled as an older Careline left it, then upgraded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BEFORE = [
    ("patients", "0003_patient_time_zones"),
    ("integrations", "0005_feed_time_zone_is_for_msh7"),
    ("scheduling", "0004_change_feed_versions"),
]

SCRIPT = """
import json, sys
from datetime import UTC, datetime, timedelta
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

targets = [tuple(t) for t in json.loads(sys.argv[1])]
executor = MigrationExecutor(connection)
executor.migrate(targets)
apps = executor.loader.project_state(targets).apps
get = apps.get_model
org = get("clinics", "Organization").objects.create(slug="valley", name="Valley")
other = get("clinics", "Organization").objects.create(slug="hill", name="Hill")
practice = get("clinics", "Practice").objects.create(
    organization=org, name="Main", code="MAIN", time_zone="America/Denver"
)
provider = get("clinics", "Provider").objects.create(organization=org, display_name="Dr. Lee")
kind = get("clinics", "AppointmentType").objects.create(organization=org, code="V", name="Visit")
Patient = get("patients", "Patient")
fed = Patient.objects.create(organization=org, mrn="12345", given_name="A", family_name="Fed")
Patient.objects.create(organization=org, mrn="777", given_name="B", family_name="Csv")
Patient.objects.create(organization=org, mrn="", given_name="C", family_name="None")
Patient.objects.create(organization=other, mrn="12345", given_name="D", family_name="Hill")
get("integrations", "Hl7Feed").objects.create(
    organization=org, name="ATHENA", identifier_system="urn:oid:1.2.3"
)
at = datetime(2030, 1, 2, 16, tzinfo=UTC)
get("scheduling", "Appointment").objects.create(
    organization=org, practice=practice, provider=provider, patient=fed,
    appointment_type=kind, start=at, end=at + timedelta(minutes=20), status="booked",
    status_changed_at=at,
    status_source="hl7", external_system="ATHENA", external_id="A1",
)
"""

REPORT = """
import json
import django
django.setup()
from careline.patients.models import PatientIdentifier
rows = PatientIdentifier.objects.order_by("system", "value").values_list(
    "organization__slug", "patient__family_name", "system", "value", "type_code"
)
print(json.dumps([list(r) for r in rows]))
"""


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_existing_mrns_move_into_the_organization_and_feed_namespaces(tmp_path):
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'old.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "careline.settings",
        "CARELINE_DATA_DIR": str(tmp_path),
    }
    _run(env, "-c", SCRIPT, json.dumps(BEFORE))
    _run(env, "-m", "careline", "migrate", "-v", "0")
    rows = json.loads(_run(env, "-c", REPORT))
    assert sorted(rows) == [
        ["hill", "Hill", "urn:careline:hill:mrn", "12345", "MR"],
        ["valley", "Csv", "urn:careline:valley:mrn", "777", "MR"],
        ["valley", "Fed", "urn:careline:valley:mrn", "12345", "MR"],
        # The feed that sent this patient's visits keeps finding them by its own MRN.
        ["valley", "Fed", "urn:oid:1.2.3", "12345", "MR"],
    ]
