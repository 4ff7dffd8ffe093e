"""Staff pages speak the practice's clock: a 7 pm Chicago visit is on Thursday, not Friday."""

from datetime import date, datetime, time

from django.urls import reverse

from careline.broadcasts.sending import Audience, preview
from careline.clinics.models import StaffRole
from careline.scheduling.appointments import book_appointment


def test_broadcast_day_filter_and_send_time_use_the_practice_zone(client, build):
    org = build.organization()
    practice = build.practice(org, time_zone="America/Chicago")
    provider = build.provider(practice, weekdays=range(7), hours=(time(8), time(21)))
    thursday = date(2026, 12, 3)
    # 19:00 Thursday in Chicago is 01:00 Friday in UTC.
    book_appointment(
        patient=build.patient(org, home_practice=practice),
        provider=provider,
        practice=practice,
        appointment_type=build.appointment_type(org),
        start=datetime.combine(thursday, time(19), tzinfo=practice.zone),
    )
    client.force_login(build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice]))
    response = client.post(
        reverse("broadcasts:compose"),
        {
            "name": "Thursday",
            "practices": [practice.id],
            "appointments_from": "2026-12-03",
            "appointments_to": "2026-12-03",
            "body_en": "Hi {first_name}",
            "action": "preview",
            "send_at": "2026-12-02T10:00",
        },
    )
    assert response.context["preview"].reach == 1
    form = response.context["form"]
    assert form.cleaned_data["send_at"] == datetime(2026, 12, 2, 10, tzinfo=practice.zone)
    # Outside a staff page too (no staff clock: UTC), the day is the practice's (issue 21).
    assert (
        preview(
            org.id,
            Audience(
                practice_ids=(practice.id,), appointments_from=thursday, appointments_to=thursday
            ),
        ).reach
        == 1
    )
