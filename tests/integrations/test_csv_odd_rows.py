"""`careline import-csv` with odd rows: each bad row is reported (line, column, reason) and,
with --skip-invalid, the good rows are imported; without it nothing is. Never a traceback."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from careline.clinics.models import AppointmentType
from careline.patients.models import Patient
from careline.scheduling.models import Appointment
from tests.integrations.test_csv_import import GOOD, HEADER

LEE = "TROY,Dr. Lee,,M7,Ana,Lopez"
ODD_ROWS = {
    "year 9999": (f"X1,{LEE},,,,,,9999-12-31 23:30,,", "start must be in the years"),
    "year 1 east of UTC": (
        f"X2,{LEE},,,,,,0001-01-01T00:00:00+05:00,,",
        "start must be in the years",
    ),
    "year 2200": (f"X3,{LEE},,,,,,2200-01-01 09:00,,", "start must be in the years 1900 to 2199"),
    "superscript two": (f"X4,{LEE},,,,,,2026-12-10 09:30,²,", "duration_minutes"),
    "arabic-indic three": (f"X5,{LEE},,,,,,2026-12-10 09:30,٣,", "duration_minutes"),
    "overflowing duration": (f"X6,{LEE},,,,,,2026-12-10 09:30,{'9' * 20},", "duration_minutes"),
    "week-long visit": (f"X7,{LEE},,,,,,2026-12-10 09:30,10080,", "duration_minutes"),
    "arabic-indic npi": ("X8,TROY,Dr. Lee,١٢٣٤٥٦٧٨٩٠,M7,Ana,Lopez,,,,,,2026-12-10 09:30,,", "npi"),
    "NUL in a name": ("X9,TROY,Dr. Lee,,M7,A\x00na,Lopez,,,,,,2026-12-10 09:30,,", "given_name"),
    "born in 9999": ("X10,TROY,Dr. Lee,,M7,Ana,Lopez,9999-12-31,,,,,2026-12-10 09:30,,", "birth"),
    "too few columns": ("X11,TROY", "missing"),
    "too many columns": (f"X12,{LEE},,,,,,2026-12-10 09:30,,,,,", "more values"),
    "all empty": (",,,,,,,,,,,,,,", "missing appointment_id"),
    "huge field": (f"X13,{LEE},,,,,,2026-12-10 09:30,,," + "x" * 200_000, "cannot be read as CSV"),
}


def _file(tmp_path, *rows: str, raw: bytes = b"") -> str:
    path = tmp_path / "visits.csv"
    path.write_bytes(("\n".join([HEADER, GOOD[0], *rows]) + "\n").encode() + raw)
    return str(path)


def _import(path: str, *extra: str) -> None:
    call_command("import-csv", path, "--organization", "capital-health", "--no-progress", *extra)


@pytest.mark.parametrize("case", ODD_ROWS)
def test_each_odd_row_is_reported_and_skipped(feeds, tmp_path, capsys, case):
    row, reason = ODD_ROWS[case]
    _import(_file(tmp_path, row), "--skip-invalid")
    out = capsys.readouterr().out
    assert "line 3: " in out and reason in out, out
    assert "1 skipped as bad" in out
    assert list(Appointment.objects.values_list("external_id", flat=True)) == ["V1"]
    assert "\x00" not in "".join(Patient.objects.values_list("given_name", flat=True))


def test_every_odd_row_at_once_without_skip_stores_nothing(feeds, tmp_path, capsys):
    rows = [row for row, _ in ODD_ROWS.values()]
    with pytest.raises(CommandError, match=f"{len(rows)} of {len(rows) + 1} rows are bad"):
        _import(_file(tmp_path, *rows))
    out = capsys.readouterr().out
    assert all(f"line {n}: " in out for n in range(3, 3 + len(rows))), out
    assert not Appointment.objects.exists() and not Patient.objects.exists()
    assert not AppointmentType.objects.filter(code="VISIT").exists()


def test_a_row_that_is_not_utf8_is_skipped_and_the_rows_after_it_imported(feeds, tmp_path, capsys):
    bad = b"X20,TROY,Dr. Lee,,M7,An\xe9,Lopez,,,,,,2026-12-10 09:30,,\n"
    path = _file(tmp_path, raw=bad + (GOOD[2] + "\n").encode())
    _import(path, "--skip-invalid")
    out = capsys.readouterr().out
    assert "line 3: given_name is not UTF-8 text" in out
    assert set(Appointment.objects.values_list("external_id", flat=True)) == {"V1", "V3"}
