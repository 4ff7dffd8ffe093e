"""Each rate is defined once (careline.analytics.glossary), shown on the analytics page, and
the page, the CSV downloads and the REST reports give the same figure on a planted dataset.
The reply rate counts every kind of reply, not only those tied to a visit."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.analytics.glossary import APPOINTMENT_RATES, ENGAGEMENT_RATES
from careline.clinics.models import StaffRole
from careline.conversations.models import InboundMessage
from careline.integrations.api_keys import issue_api_key
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import Appointment, AppointmentStatus
from tests.api.conftest import Api

_sid = iter(range(1, 10_000))


@pytest.fixture
def planted(build):
    """Six visits of one practice, each reminded once an hour ago; replies of every kind."""
    practice = build.practice(name="Birch Clinic")
    provider = build.provider(practice, weekdays=range(7), hours=None)
    kind = build.appointment_type(practice.organization)
    now = timezone.now()
    visits = [
        book_appointment(
            patient=build.patient(
                practice.organization, home_practice=practice, mobile_phone=f"+1512555{70 + i:04d}"
            ),
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=now + timedelta(days=2, hours=i),
            check_working_time=False,
        )
        for i in range(6)
    ]
    OutboundMessage.objects.filter(appointment__in=visits).delete()
    for visit in visits:
        OutboundMessage.objects.create(
            organization=practice.organization,
            practice=practice,
            appointment=visit,
            patient=visit.patient,
            channel="sms",
            to_address=visit.patient.mobile_phone,
            kind=MessageKind.REMINDER,
            step_key="reminder:1440",
            visit_start=visit.start,
            state=MessageState.DELIVERED,
            due_at=now - timedelta(hours=1),
            created_at=now - timedelta(hours=1),
            sent_at=now - timedelta(hours=1),
        )

    def text(visit, body, *, minutes_ago=30, about_visit=False):
        InboundMessage.objects.create(
            provider_message_id=f"SM-glossary-{next(_sid)}",
            organization=practice.organization,
            practice=practice,
            from_phone=visit.patient.mobile_phone,
            to_phone="+15125550100",
            body=body,
            received_at=now - timedelta(minutes=minutes_ago),
            appointment=visit if about_visit else None,
        )

    text(visits[0], "C", about_visit=True)  # a confirmation, tied to the visit
    text(visits[1], "STOP")  # an opt-out: not tied to a visit
    text(visits[2], "Is there parking?")  # a question for the inbox
    text(visits[3], "HELP")
    text(visits[4], "hello", minutes_ago=120)  # before the reminder: not a reply to it
    # visits[5]: no answer. Outcomes for the appointment rates: one cancelled.
    Appointment.objects.filter(pk=visits[5].pk).update(status=AppointmentStatus.CANCELLED)
    return practice


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_page_csv_and_rest_agree_and_every_reply_kind_counts(client, build, planted):
    practice = planted
    organization = practice.organization
    client.force_login(build.staff(organization, StaffRole.ORGANIZATION_ADMIN))
    api = Api(issue_api_key(organization_slug=organization.slug, name="BI").plaintext)

    # Reply rate: 4 of 6 reminded visits answered (C, STOP, a question, HELP).
    [rest] = api.get("reports/engagement", practice=practice.pk).json()["data"]
    assert (rest["visits_with_reply"], rest["reminded_visits"]) == (4, 6)
    assert rest["reply_rate"] == pytest.approx(4 / 6)
    [row] = _csv(
        client.get(reverse("analytics:dashboard"), {"format": "csv", "table": "engagement"})
    )
    assert float(row["Reply rate"]) == pytest.approx(round(4 / 6, 4))
    page = client.get(reverse("analytics:dashboard")).content.decode()
    assert "<td>66.7%</td>" in page

    # Appointment rates: the same figures on every door.
    [rest_row] = api.get("reports/appointments", practice=practice.pk).json()["data"]
    [csv_row] = _csv(
        client.get(reverse("analytics:dashboard"), {"format": "csv", "group_by": "practice"})
    )
    assert rest_row["cancellation_rate"] == pytest.approx(1 / 6)
    assert float(csv_row["Cancellation rate"]) == pytest.approx(1 / 6)
    for rate in APPOINTMENT_RATES:
        value = rest_row[rate.key]
        assert (csv_row[rate.name] or None) == (None if value is None else str(value))


def test_every_rate_is_defined_on_the_page_and_in_the_api_document(client, build, planted):
    from careline.api.v1.openapi import openapi_document

    client.force_login(build.staff(planted.organization, StaffRole.ORGANIZATION_ADMIN))
    page = client.get(reverse("analytics:dashboard")).content.decode()
    schemas = openapi_document("http://testserver/api/v1")["components"]["schemas"]
    documented = {
        **schemas["MetricsRow"]["properties"],
        **schemas["EngagementRow"]["properties"],
    }
    for rate in (*APPOINTMENT_RATES, *ENGAGEMENT_RATES):
        assert f'<dt id="rate-{rate.key}">{rate.name}</dt>' in page
        assert rate.counts.replace("'", "&#x27;") in page
        assert rate.out_of in page
        assert rate.out_of in documented[rate.key]["description"]
    assert "whatever it said" in page
