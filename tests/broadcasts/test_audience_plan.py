"""The audience query reads the chosen practices' visits once, whatever the statistics say
(issue 21: on a fresh demo without statistics, SQLite walked a whole practice's visits for
every patient of the organization, and the preview took 119 s)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.db import connection

from careline.broadcasts.sending import Audience, preview, recipients
from careline.clinics.models import Practice
from careline.demo.generator import DemoOptions, generate_demo
from tests.demo.test_statistics_after_bulk_loads import _forget_statistics

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def fresh_demo(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    result = generate_demo(
        DemoOptions(practices=3, providers=8, patients=400, appointments=3000), now=NOW
    )
    # As a load that nothing analyzed would leave them (the demo itself analyzes now).
    _forget_statistics("scheduling_appointment", "patients_patient", "patients_phoneconsent")
    return result


def _plan(sql: str, params) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            # A fresh connection reads statistics when it opens; make this one forget too.
            cursor.execute("ANALYZE sqlite_schema")
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("whole", [False, True], ids=["one practice", "every practice"])
def test_visits_are_read_once_not_per_patient(fresh_demo, whole):
    org = fresh_demo.organization
    practice_ids = tuple(
        Practice.objects.filter(organization=org).order_by("id").values_list("id", flat=True)
    )
    audience = Audience(practice_ids=practice_ids if whole else practice_ids[:1])
    plan = _plan(*recipients(org.id, audience).query.sql_with_params())
    if connection.vendor == "sqlite":
        assert "CORRELATED" not in plan.replace("CORRELATED SCALAR SUBQUERY", ""), plan
        assert "LIST SUBQUERY" in plan, plan
        # The correlated part left is the opt-out lookup by its unique (organization, phone).
        assert plan.count("CORRELATED SCALAR SUBQUERY") <= 1, plan
    else:
        # Visits: one hashed pass (or a join); never a subplan run per patient row.
        visit_lines = [line for line in plan.splitlines() if "scheduling_appointment" in line]
        assert visit_lines, plan
        for number in re.findall(r"^\s*SubPlan (\d+)$", plan, re.MULTILINE):
            assert f"hashed SubPlan {number}" in plan, plan
    reach = preview(org.id, audience).reach
    assert 0 < reach <= 400
