"""Re-importing a CSV: unchanged rows write nothing and plan nothing; a changed row
re-plans its own visit only, never the whole organization (issue 21)."""

from __future__ import annotations

import io
from datetime import timedelta

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from careline.messaging.models import MessageState, OutboundMessage
from careline.patients.records import update_patient
from careline.scheduling.models import Appointment
from tests.integrations.test_csv_import import _write


class _Writes:
    """INSERT / UPDATE / DELETE statements run while it is installed."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self.statements.append(sql)
        return execute(sql, params, many, context)


def _rows(day: str, first_start: str = "09:30") -> list[str]:
    return [
        f"V1,TROY,Dr. Lee,,M1,Ana,Lopez,,(518) 555-0122,,,,{day} {first_start},30,booked",
        f"V2,TROY,Dr. Lee,,M2,Bo,Smith,,(518) 555-0123,,,,{day} 10:30,30,booked",
        f"V3,ALB,Dr. Kim,,M3,Cy,Diaz,,(518) 555-0124,,,,{day} 11:30,30,booked",
    ]


def _import(path) -> str:
    out = io.StringIO()
    call_command(
        "import-csv", str(path), "--organization", "capital-health", "--no-progress", stdout=out
    )
    return out.getvalue()


def _plans(external_id: str) -> list[tuple]:
    return list(
        OutboundMessage.objects.filter(appointment__external_id=external_id)
        .order_by("id")
        .values_list("id", "state", "due_at", "reason")
    )


def _day() -> str:
    return (timezone.localdate() + timedelta(days=10)).isoformat()


def test_reimporting_the_same_file_writes_no_row_and_plans_nothing(feeds, tmp_path):
    path = _write(tmp_path, *_rows(_day()))
    _import(path)
    planned = list(OutboundMessage.objects.order_by("id").values_list("id", "state", "due_at"))
    assert planned, "the first import plans reminders"
    versions = list(Appointment.objects.order_by("id").values_list("id", "version"))
    writes = _Writes()
    with connection.execute_wrapper(writes):
        _import(path)
    assert writes.statements == []
    assert list(OutboundMessage.objects.order_by("id").values_list("id", "state", "due_at")) == (
        planned
    )
    assert list(Appointment.objects.order_by("id").values_list("id", "version")) == versions


def test_one_changed_row_replans_that_visit_only(feeds, tmp_path):
    day = _day()
    _import(_write(tmp_path, *_rows(day)))
    # Drift the re-plan of a whole organization would repair: Bo's plans are gone.
    OutboundMessage.objects.filter(appointment__external_id="V2").delete()
    before_v3 = _plans("V3")
    _import(_write(tmp_path, *_rows(day, first_start="14:00"), name="moved.csv"))
    v1 = Appointment.objects.get(external_id="V1")
    live = [p for p in _plans("V1") if p[1] == MessageState.SCHEDULED]
    assert live and all(due < v1.start for _, _, due, _ in live)
    assert {reason for _, state, _, reason in _plans("V1") if state == MessageState.CANCELLED} == {
        "appointment_moved"
    }
    assert _plans("V2") == []  # not re-planned: its row did not change
    assert _plans("V3") == before_v3


class _Lookups:
    """The MRNs looked up by identifier while it is installed."""

    def __init__(self) -> None:
        self.mrns: set[str] = set()

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith("SELECT") and "patients_patientidentifier" in sql:
            self.mrns |= {p for p in params or () if isinstance(p, str) and p.startswith("M")}
        return execute(sql, params, many, context)


def test_unchanged_rows_are_known_by_their_fingerprint_and_skipped_unread(feeds, tmp_path):
    day = _day()
    _import(_write(tmp_path, *_rows(day)))
    added = f"V4,ALB,Dr. Kim,,M4,Di,Wu,,(518) 555-0125,,,,{day} 13:30,30,booked"
    lookups = _Lookups()
    with connection.execute_wrapper(lookups):
        out = _import(_write(tmp_path, *_rows(day), added, name="again.csv"))
    assert "4 rows: 1 new, 0 updated, 3 unchanged" in out
    # Only the new row's patient is looked up: the three known rows are not even read.
    assert lookups.mrns == {"M4"}
    writes = _Writes()
    with connection.execute_wrapper(writes):
        out = _import(_write(tmp_path, *_rows(day), added, name="third.csv"))
    assert "4 rows: 0 new, 0 updated, 4 unchanged" in out and writes.statements == []


def test_a_visit_or_patient_changed_elsewhere_is_compared_again(feeds, tmp_path):
    day = _day()
    path = _write(tmp_path, *_rows(day))
    _import(path)
    bo = Appointment.objects.get(external_id="V2").patient
    # Another door (FHIR, the front desk) changes Bo's number: his row's fingerprint still
    # matches the file, but it no longer describes what Careline holds.
    update_patient(bo, mobile_phone="+15185550999")
    cy = Appointment.objects.get(external_id="V3")
    versions = {
        "V1": Appointment.objects.get(external_id="V1").version,
        "V3": cy.version,
    }
    out = _import(path)
    assert "3 rows: 0 new, 0 updated, 3 unchanged" in out
    bo.refresh_from_db()
    assert bo.mobile_phone == "+15185550123"  # the file's number again, as before
    assert {k: Appointment.objects.get(external_id=k).version for k in ("V1", "V3")} == versions


def test_a_practice_time_zone_change_reaches_rows_that_did_not_change(feeds, tmp_path):
    day = _day()
    path = _write(tmp_path, *_rows(day))
    _import(path)
    before = Appointment.objects.get(external_id="V3").start
    feeds.albany.time_zone = "America/Los_Angeles"
    feeds.albany.save()
    out = _import(path)
    assert "0 new, 1 updated, 2 unchanged" in out
    assert Appointment.objects.get(external_id="V3").start == before + timedelta(hours=3)
