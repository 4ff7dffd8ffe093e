"""Comparing many practices and providers: ranked, searched, sparklines, the funnel, CSV."""

import csv
import io
from datetime import datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.analytics import ranking
from careline.clinics.models import StaffRole
from careline.messaging.models import OutboundMessage
from careline.scheduling.models import Appointment, AppointmentStatus


def _clinic_with_rates(build, rates: dict[str, tuple[int, int]]):
    """Practices named by key, each with (no-shows, visits) last month."""
    org = build.organization()
    kind = build.appointment_type(org)
    now = timezone.now()
    made = {}
    for name, (no_shows, visits) in rates.items():
        practice = build.practice(org, name=name)
        provider = build.provider(practice, weekdays=range(7))
        patient = build.patient(org)
        start = datetime.combine(now.date() - timedelta(days=20), time(15), tzinfo=practice.zone)
        rows = [
            Appointment(
                organization=org, practice=practice, provider=provider, patient=patient,
                appointment_type=kind, start=start + timedelta(minutes=20 * i),
                end=start + timedelta(minutes=20 * i + 20), allow_overlap=True,
                status=AppointmentStatus.NO_SHOW if i < no_shows else AppointmentStatus.FULFILLED,
                status_changed_at=now, status_source="hl7",
            )
            for i in range(visits)
        ]  # fmt: skip
        made[name] = Appointment.objects.bulk_create(rows)
    return org, made


def test_ranking_orders_limits_searches_and_leaves_out_small_groups(build):
    org, _ = _clinic_with_rates(
        build,
        {"North": (10, 40), "South": (2, 40), "East": (20, 40), "West": (5, 40), "Tiny": (3, 4)},
    )
    visits = Appointment.objects.filter(organization=org)
    top = ranking.rank(visits, group_by="practice", start=None, end=None, limit=2, min_due=30)
    assert [r.metrics.label for r in top.rows] == ["East", "North"]
    assert [r.rank for r in top.rows] == [1, 2]
    assert (top.matching, top.too_few) == (4, 1)
    bottom = ranking.rank(
        visits, group_by="practice", start=None, end=None, limit=2, bottom=True, min_due=30
    )
    assert [(r.rank, r.metrics.label) for r in bottom.rows] == [(3, "West"), (4, "South")]
    by_name = ranking.rank(
        visits, group_by="practice", start=None, end=None, sort="label", descending=False,
        search="st", min_due=0,
    )  # fmt: skip
    assert [r.metrics.label for r in by_name.rows] == ["East", "West"]
    # The sparkline's last month holds the practice's rate, on the shared scale.
    east = top.rows[0]
    assert east.spark[-1] == pytest.approx(0.5) or east.spark[-2] == pytest.approx(0.5)
    assert top.spark_peak == pytest.approx(0.5)


def test_funnel_nests_texted_confirmed_arrived(build):
    org, made = _clinic_with_rates(build, {"Only": (2, 10)})
    visits = made["Only"]
    # Texted: the last 6; confirmed: 4 of those (and 1 never texted); arrived: 3 of the 4.
    for v in visits[4:]:
        OutboundMessage.objects.create(
            organization=org, practice_id=v.practice_id, patient_id=v.patient_id,
            appointment=v, channel="sms", to_address="+15125550100", sender="",
            kind="reminder", step_key="reminder:1440", visit_start=v.start, state="delivered",
            due_at=v.start - timedelta(days=1), created_at=v.start - timedelta(days=2),
        )  # fmt: skip
    confirmed = [visits[0], *visits[1:2], *visits[4:7]]  # visits[1] is a no-show, not texted
    Appointment.objects.filter(id__in=[v.id for v in confirmed]).update(confirmed_at=timezone.now())
    Appointment.objects.filter(id=visits[5].id).update(status=AppointmentStatus.NO_SHOW)
    funnel = ranking.funnel(Appointment.objects.filter(organization=org), start=None, end=None)
    assert (funnel.visits, funnel.texted, funnel.confirmed, funnel.arrived) == (10, 6, 3, 2)


def test_compare_page_csv_and_bad_parameters(client, build):
    org, _ = _clinic_with_rates(build, {"Alpha Clinic": (4, 40), "Beta Clinic": (8, 40)})
    client.force_login(build.staff(org, StaffRole.ORGANIZATION_ADMIN))
    url = reverse("analytics:compare")
    page = client.get(url, {"group_by": "practice", "n": 1})
    body = page.content.decode()
    assert page.status_code == 200 and "1. Beta Clinic" in body and "Alpha Clinic</td>" not in body
    rows = list(csv.reader(io.StringIO(client.get(url, {"format": "csv", "order": "asc"}).content
                                       .decode())))  # fmt: skip
    assert [r[:2] for r in rows[1:]] == [["1", "Alpha Clinic"], ["2", "Beta Clinic"]]
    assert rows[1][rows[0].index("No-show rate")] == "0.1"
    funnel = client.get(url, {"format": "csv", "chart": "funnel"}).content.decode()
    assert funnel.splitlines()[1] == "Visits,80,1.0"
    for bad in ({"n": "0"}, {"n": "٣"}, {"sort": "patient"}, {"group_by": "zip"}, {"from": "x"}):
        response = client.get(url, bad)
        assert response.status_code == 400 and list(bad)[0] in response.content.decode()
    # Another organization's staff sees none of it.
    other = build.organization()
    client.force_login(build.staff(other, StaffRole.ORGANIZATION_ADMIN))
    assert "Beta Clinic" not in client.get(url).content.decode()
