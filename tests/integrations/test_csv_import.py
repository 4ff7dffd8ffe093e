"""CSV import: validation report, all-or-nothing, updates by id, batches, the command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from careline.clinics.models import Provider
from careline.integrations.csv.importer import CsvLayoutError, import_csv
from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentEvent, AppointmentStatus

HEADER = (
    "appointment_id,practice,provider,provider_npi,mrn,given_name,family_name,birth_date,"
    "mobile_phone,email,language,appointment_type,start,duration_minutes,status"
)


def _write(tmp_path, *rows: str, header: str = HEADER, name: str = "visits.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


GOOD = [
    "V1,TROY,Dr. Lee,,M1,Ana,Lopez,1980-02-03,(518) 555-0122,ana@example.org,es,NP30,"
    "2026-12-10 09:30,30,booked",
    "V2,troy,dr. lee,,M1,Ana,Lopez,,518-555-0122,,,,2026-12-11T09:30:00-05:00,,",
    'V3,ALB,"Patel, Nisha",1234567893,M2,Bo,"Smith, Jr",,,,English,,2026-12-12 08:00,15,cancelled',
]


def test_imports_rows_with_mapping_and_time_zones(feeds, tmp_path):
    report = import_csv(_write(tmp_path, *GOOD), feeds.organization)
    assert (report.rows, report.created, report.invalid, report.imported) == (3, 3, 0, True)
    v1 = Appointment.objects.get(external_id="V1")
    assert v1.start == datetime(2026, 12, 10, 14, 30, tzinfo=UTC)  # New York practice
    assert (v1.end - v1.start).total_seconds() == 30 * 60
    assert v1.practice == feeds.troy and v1.external_system == "csv" and v1.allow_overlap
    assert v1.appointment_type.code == "NP30"
    v2 = Appointment.objects.get(external_id="V2")
    assert v2.provider == v1.provider  # matched without regard to case
    assert v2.appointment_type.code == "VISIT"
    patient = Patient.objects.get(mrn="M1")
    assert (patient.mobile_phone, patient.preferred_language) == ("+15185550122", "es")
    v3 = Appointment.objects.get(external_id="V3")
    assert v3.status == AppointmentStatus.CANCELLED and v3.patient.family_name == "Smith, Jr"
    assert v3.provider.npi == "1234567893" and feeds.albany in v3.provider.practices.all()
    assert AppointmentEvent.objects.filter(source="csv").count() == 3


def test_bad_rows_are_listed_and_nothing_is_imported(feeds, tmp_path):
    path = _write(
        tmp_path,
        GOOD[0],
        "V4,NOPE,Dr. Lee,,M4,A,B,,,,,,2026-12-10 09:30,,",
        "V5,TROY,Dr. Lee,,M5,A,B,,not a phone,,,,2026-12-10 09:30,,",
        "V6,TROY,Dr. Lee,,M6,A,B,,,,,,next tuesday,,",
        "V7,TROY,Dr. Lee,,,A,B,,,,,,2026-12-10 09:30,,",
        "V8,TROY,Dr. Lee,,M8,A,B,,,,,,2026-12-10 09:30,,maybe",
        "V9,TROY,Dr. Lee,,M9,A,B,,,,,,2026-12-10 09:30,,,extra",
    )
    report = import_csv(path, feeds.organization)
    assert not report.imported
    assert [line for line, _ in report.errors] == [3, 4, 5, 6, 7, 8]
    reasons = dict(report.errors)
    assert "unknown practice code 'NOPE'" in reasons[3]
    assert "mobile_phone 'not a phone'" in reasons[4]
    assert "start 'next tuesday'" in reasons[5]
    assert "missing mrn" in reasons[6]
    assert "status 'maybe'" in reasons[7]
    assert "more values than there are columns" in reasons[8]
    assert not Appointment.objects.exists() and not Patient.objects.exists()


def test_skip_invalid_imports_the_rest(feeds, tmp_path):
    path = _write(tmp_path, GOOD[0], "V4,NOPE,Dr. Lee,,M4,A,B,,,,,,2026-12-10 09:30,,")
    report = import_csv(path, feeds.organization, skip_invalid=True)
    assert report.imported and report.created == 1 and report.invalid == 1
    assert list(Appointment.objects.values_list("external_id", flat=True)) == ["V1"]


def test_reimport_updates_by_id_and_keeps_patient_confirmation(feeds, tmp_path):
    import_csv(_write(tmp_path, *GOOD), feeds.organization)
    Appointment.objects.filter(external_id="V1").update(status=AppointmentStatus.CONFIRMED)
    moved = GOOD[1].replace("2026-12-11T09:30:00-05:00", "2026-12-11T11:00:00-05:00")
    report = import_csv(_write(tmp_path, GOOD[0], moved, GOOD[2]), feeds.organization)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 2)
    assert Appointment.objects.get(external_id="V1").status == AppointmentStatus.CONFIRMED
    v2 = Appointment.objects.get(external_id="V2")
    assert v2.start == datetime(2026, 12, 11, 16, 0, tzinfo=UTC)
    assert v2.events.exclude(old_start=None).count() == 1
    assert Appointment.objects.count() == 3 and Provider.objects.count() == 2


def test_batches_and_duplicates_in_file(feeds, tmp_path):
    rows = [
        f"B{n},TROY,Dr. Lee,,M{n % 7},P{n},Q,,,,,,2026-12-10 {8 + n % 9:02d}:00,20,"
        for n in range(25)
    ]
    rows.append("B3,TROY,Dr. Lee,,M3,P3,Q,,,,,,2026-12-10 16:45,20,cancelled")
    report = import_csv(_write(tmp_path, *rows), feeds.organization, batch_size=4)
    assert report.rows == 26 and report.invalid == 0
    assert Appointment.objects.count() == 25
    assert Patient.objects.count() == 7
    assert Appointment.objects.get(external_id="B3").status == AppointmentStatus.CANCELLED


def test_layout_errors(feeds, tmp_path):
    with pytest.raises(CsvLayoutError, match="lacks the required column"):
        import_csv(_write(tmp_path, "1,2", header="appointment_id,practice"), feeds.organization)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CsvLayoutError, match="empty"):
        import_csv(empty, feeds.organization)


def test_command_reports_bad_rows_and_summary(feeds, tmp_path, capsys):
    bad = _write(tmp_path, GOOD[0], "V4,NOPE,Dr. Lee,,M4,A,B,,,,,,2026-12-10 09:30,,")
    with pytest.raises(CommandError, match="1 of 2 rows are bad; nothing was imported"):
        call_command("import-csv", str(bad), "--organization", "capital-health", "--no-progress")
    assert "line 3: unknown practice code 'NOPE'" in capsys.readouterr().out
    good = _write(tmp_path, *GOOD, name="good.csv")
    call_command("import-csv", str(good), "--organization", "capital-health", "--no-progress")
    assert "3 rows: 3 new, 0 updated" in capsys.readouterr().out


def test_duration_is_elapsed_time_across_dst(feeds, tmp_path):
    row = "D1,TROY,Dr. Lee,,M1,Ana,Lopez,,,,,,2027-03-14 01:50,90,"
    import_csv(_write(tmp_path, row), feeds.organization)
    appointment = Appointment.objects.get(external_id="D1")
    assert appointment.start == datetime(2027, 3, 14, 6, 50, tzinfo=UTC)
    assert appointment.end == datetime(2027, 3, 14, 8, 20, tzinfo=UTC)
