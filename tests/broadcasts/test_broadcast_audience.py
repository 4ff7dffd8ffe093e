"""Who a broadcast reaches, who it skips and why, and that it is queued set-based."""

import io
from datetime import date, datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from careline.broadcasts.models import Broadcast
from careline.broadcasts.sending import (
    Audience,
    BroadcastError,
    delivery_report,
    preview,
    send_broadcast,
)
from careline.clinics.models import StaffRole
from careline.messaging.models import MessageKind, MessageState, OutboundMessage, Priority
from careline.patients.consent import record_consent
from careline.scheduling.appointments import book_appointment

THURSDAY = date(2026, 12, 3)


@pytest.fixture
def world(build):
    org = build.organization()
    north = build.practice(org, name="North Clinic", time_zone="America/Chicago")
    south = build.practice(org, name="South Clinic", time_zone="America/Chicago")
    lee = build.provider(north, display_name="Dr. Lee", weekdays=range(7))
    kim = build.provider(north, display_name="Dr. Kim", weekdays=range(7))
    kind = build.appointment_type(org)

    def patient(name, practice, **kw):
        return build.patient(org, given_name=name, home_practice=practice, **kw)

    people = {
        "ana": patient("Ana", north),
        "bea": patient("Bea", north, preferred_language="es"),
        "cal": patient("Cal", north, mobile_phone=""),
        "dov": patient("Dov", north, mobile_phone="+15125550901"),
        "eve": patient("Eve", north, mobile_phone="+15125550902"),
        "fay": patient("Fay", north, mobile_phone="+15125550902"),  # Eve's family
        "gus": patient("Gus", south),
    }
    record_consent(
        organization_id=org.id,
        phone="+15125550901",
        opted_out=True,
        source="patient_text",
        detail="STOP",
    )
    for i, (name, provider) in enumerate(
        [("ana", lee), ("bea", lee), ("cal", lee), ("dov", lee), ("eve", lee), ("fay", kim)]
    ):
        book_appointment(
            patient=people[name],
            provider=provider,
            practice=north,
            appointment_type=kind,
            start=datetime.combine(
                THURSDAY,
                time(9, 20 * (i % 3)) if i < 3 else time(10, 20 * (i % 3)),
                tzinfo=north.zone,
            ),
        )
    return {"org": org, "north": north, "south": south, "lee": lee, "kim": kim, **people}


def test_dr_lees_thursday_audience_with_exclusions(world):
    audience = Audience(
        practice_ids=(world["north"].id,),
        provider_ids=(world["lee"].id,),
        appointments_from=THURSDAY,
        appointments_to=THURSDAY,
    )
    result = preview(world["org"].id, audience)
    # Ana, Bea and Eve are reachable; Cal has no mobile; Dov opted out; Fay sees Dr. Kim.
    assert result.reach == 3
    assert result.excluded == {
        "opted out": 1,
        "no mobile number": 1,
        "shares a number with another recipient": 0,
    }
    assert result.by_language == {"en": 2, "es": 1}


def test_family_number_gets_one_text_and_practice_filter_holds(world):
    audience = Audience(practice_ids=(world["north"].id,))
    result = preview(world["org"].id, audience)
    assert result.reach == 3  # Ana, Bea, and one of Eve/Fay; never Gus of South
    assert result.excluded["shares a number with another recipient"] == 1


def test_send_queues_exact_rows_with_language_and_variables(world):
    audience = Audience(
        practice_ids=(world["north"].id,),
        provider_ids=(world["lee"].id,),
        appointments_from=THURSDAY,
        appointments_to=THURSDAY,
    )
    send_at = timezone.now() + timedelta(hours=1)
    broadcast = send_broadcast(
        organization_id=world["org"].id,
        audience=audience,
        name="Telehealth Thursday",
        body_en="Hi {first_name}, {practice}: Dr. Lee's Thursday clinic moves to telehealth. "
        "Reply R to reschedule.",
        body_es="Hola {first_name}, {practice}: la clínica del jueves será por video.",
        send_at=send_at,
    )
    assert not OutboundMessage.objects.filter(broadcast_id=broadcast.id).exists()
    call_command("worker", "--once", stdout=io.StringIO())  # queues its texts
    rows = OutboundMessage.objects.filter(broadcast_id=broadcast.id)
    bodies = {m.patient.given_name: m.body for m in rows.select_related("patient")}
    assert set(bodies) == {"Ana", "Bea", "Eve"}
    assert bodies["Ana"].startswith("Hi Ana, North Clinic: Dr. Lee's Thursday clinic")
    assert bodies["Bea"] == "Hola Bea, North Clinic: la clínica del jueves será por video."
    assert {m.kind for m in rows} == {MessageKind.BROADCAST}
    assert {m.priority for m in rows} == {Priority.BROADCAST}
    assert {m.state for m in rows} == {MessageState.SCHEDULED}
    assert all(m.due_at == send_at and m.expires_at > send_at for m in rows)
    assert broadcast.recipients == 3
    assert delivery_report(broadcast)["Scheduled"] == 3


def test_bad_variables_and_empty_practice_list_are_refused(world):
    with pytest.raises(BroadcastError, match="Unknown variable {last_name}"):
        send_broadcast(
            organization_id=world["org"].id,
            audience=Audience(practice_ids=(world["north"].id,)),
            name="x",
            body_en="Hi {last_name}",
        )
    with pytest.raises(BroadcastError, match="at least one practice"):
        preview(world["org"].id, Audience(practice_ids=()))


def test_front_desk_cannot_send_and_cannot_see_other_practices_broadcasts(client, build, world):
    desk = build.staff(world["org"], StaffRole.FRONT_DESK, practices=[world["south"]])
    manager = build.staff(world["org"], StaffRole.PRACTICE_MANAGER, practices=[world["north"]])
    north_broadcast = send_broadcast(
        organization_id=world["org"].id,
        audience=Audience(practice_ids=(world["north"].id,)),
        name="North news",
        body_en="Hello {first_name}",
    )
    client.force_login(desk)
    assert client.get(reverse("broadcasts:compose")).status_code == 403
    assert client.get(reverse("broadcasts:detail", args=[north_broadcast.id])).status_code == 404
    assert client.post(reverse("broadcasts:cancel", args=[north_broadcast.id])).status_code == 403
    client.force_login(manager)
    assert client.get(reverse("broadcasts:detail", args=[north_broadcast.id])).status_code == 200
    # Tampering: a manager of North posts South as the audience.
    response = client.post(
        reverse("broadcasts:compose"),
        {
            "name": "sneaky",
            "practices": [world["south"].id],
            "body_en": "hi",
            "action": "send",
        },
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Broadcast.objects.filter(name="sneaky").exists()


def test_manager_previews_then_sends_through_the_page(client, build, world):
    manager = build.staff(world["org"], StaffRole.PRACTICE_MANAGER, practices=[world["north"]])
    client.force_login(manager)
    form = {
        "name": "Flu shots",
        "practices": [world["north"].id],
        "language": "es",
        "body_en": "Flu shots at {practice}",
        "body_es": "Vacunas en {practice} 💉",
    }
    previewed = client.post(reverse("broadcasts:compose"), {**form, "action": "preview"})
    body = previewed.content.decode()
    assert previewed.context["preview"].reach == 1  # only Bea prefers Spanish
    assert "Vacunas en North Clinic 💉" in body and "UCS-2" in body
    sent = client.post(reverse("broadcasts:compose"), {**form, "action": "send"})
    broadcast = Broadcast.objects.get(name="Flu shots")
    assert sent.status_code == 302 and sent["Location"].endswith(f"/broadcasts/{broadcast.id}/")
    call_command("worker", "--once", stdout=io.StringIO())
    assert OutboundMessage.objects.filter(broadcast_id=broadcast.id).count() == 1
