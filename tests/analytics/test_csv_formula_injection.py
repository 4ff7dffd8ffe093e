"""CSV exports cannot carry a spreadsheet formula (CSV injection)."""

import csv
import io
from pathlib import Path

import pytest
from django.urls import reverse

import careline
from careline import spreadsheets
from careline.clinics.models import StaffRole


@pytest.mark.parametrize(
    "value", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=1", "\r=1", '=HYPERLINK("x")']
)
def test_formula_like_text_gets_a_quote(value):
    assert spreadsheets.neutralize(value) == "'" + value


@pytest.mark.parametrize("value", ["Maple Clinic", "", 3, -2, 0.25, None, "a=b"])
def test_other_cells_are_left_alone(value):
    assert spreadsheets.neutralize(value) == value


def test_writer_neutralizes_every_cell():
    out = io.StringIO()
    w = spreadsheets.writer(out)
    w.writerow(["=a", "b"])
    w.writerows([["@c", 1], ["-d", -1]])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["'=a", "b"],
        ["'@c", "1"],
        ["'-d", "-1"],
    ]


def test_the_dashboard_export_neutralizes_a_practice_named_like_a_formula(client, build):
    practice = build.practice(name='=HYPERLINK("http://evil.example","Open")')
    user = build.staff(practice.organization, StaffRole.PRACTICE_MANAGER, practices=[practice])
    client.force_login(user)
    response = client.get(
        reverse("analytics:dashboard"),
        {"group_by": "practice", "format": "csv", "table": "engagement"},
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][0] == '\'=HYPERLINK("http://evil.example","Open")'


def test_no_module_but_spreadsheets_makes_a_csv_writer():
    root = Path(careline.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "spreadsheets.py"
        and ("csv.writer(" in path.read_text() or "csv.DictWriter(" in path.read_text())
    ]
    assert offenders == []
