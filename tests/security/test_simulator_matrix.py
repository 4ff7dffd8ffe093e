"""The patient-phone simulator × every role (issue 18): anonymous visitors are refused,
staff of organization A see only A's phones and texts and cannot answer as B's patient.

The simulator's URLs are found in the URL resolver, so a page added to it fails here until
this file says how it is tried.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.conversations.models import InboundMessage
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageKind, OutboundMessage, ReminderRule, VoiceCall
from careline.messaging.outbox import queue_reply
from careline.messaging.planning import sync_reminders
from careline.messaging.rules import save_rule
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

SENDERS = {"A": "+15125550511", "B": "+13035550522"}
PHONES = {"A": "+15125550533", "B": "+13035550544"}
ROLES = ["front_desk", "manager", "org_admin", "anonymous", "memberless"]
# Every simulator page this file knows how to try.
KNOWN = {"simulator", "simulator-reply", "simulator-answer", "simulator-key"}


def _simulator_names() -> set[str]:
    def walk(patterns):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns)
            elif isinstance(p, URLPattern) and p.callback.__module__ == "careline.web.simulator":
                yield p.name

    return set(walk(get_resolver().url_patterns))


def test_every_simulator_page_is_in_the_matrix():
    names = _simulator_names()
    assert names == KNOWN, (
        f"simulator pages {sorted(names - KNOWN)} are not tried by "
        "tests/security/test_simulator_matrix.py: add them to the matrix"
    )


@pytest.fixture
def world(build, django_user_model):
    orgs = {}
    for tag in ("A", "B"):
        org = build.organization(name=f"Sim {tag} Health", default_sender_number=SENDERS[tag])
        practice = build.practice(org, name=f"Sim {tag} Clinic")
        orgs[tag] = {
            "org": org,
            "front_desk": build.staff(org, StaffRole.FRONT_DESK, practices=[practice]),
            "manager": build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice]),
            "org_admin": build.staff(org, StaffRole.ORGANIZATION_ADMIN),
        }
        queue_reply(
            organization_id=org.id,
            to_phone=PHONES[tag],
            body=f"Secret {tag}-text for Patient{tag}zz",
            sender=SENDERS[tag],
        )
    Dispatcher(SimulatorGateway(), clock=timezone.now).run_once()
    orgs["memberless"] = django_user_model.objects.create_user("nomember", password="x-pass-42!")
    return orgs


def _login(client, world, role: str) -> None:
    if role == "memberless":
        client.force_login(world["memberless"])
    elif role != "anonymous":
        client.force_login(world["A"][role])


def _refused(response, role: str, what: str) -> None:
    if role == "anonymous":
        assert response.status_code == 302, what
        assert response["Location"].startswith(reverse("login")), what
    else:
        assert response.status_code == 403, f"{role}: {what} gave {response.status_code}"


def _assert_nothing_of_b(response, what: str) -> None:
    body = response.content.decode()
    for secret in ("PatientBzz", "Secret B-text", PHONES["B"], SENDERS["B"], "Sim B"):
        assert secret not in body, f"{secret} leaked at {what}"


@pytest.mark.parametrize("role", ROLES)
def test_simulator_page(client, world, role):
    _login(client, world, role)
    response = client.get(reverse("simulator"))
    _assert_nothing_of_b(response, f"{role}: GET /simulator/")
    if role in ("anonymous", "memberless"):
        _refused(response, role, "GET /simulator/")
        assert "PatientAzz" not in response.content.decode()
    else:
        assert response.status_code == 200
        body = response.content.decode()
        assert "PatientAzz" in body and PHONES["A"] in body


@pytest.mark.parametrize("role", ROLES)
def test_simulator_reply(client, world, role):
    _login(client, world, role)
    url = reverse("simulator-reply")
    for from_phone, to_phone in (
        (PHONES["B"], SENDERS["B"]),  # as B's patient, to B's number
        (PHONES["B"], SENDERS["A"]),  # B's patient, to A's number
        (PHONES["A"], SENDERS["B"]),  # A's patient, to B's number
    ):
        what = f"reply from {from_phone} to {to_phone}"
        response = client.post(url, {"from_phone": from_phone, "to_phone": to_phone, "body": "C"})
        _refused(response, role, what)
        _assert_nothing_of_b(response, what)
    assert not InboundMessage.objects.exists()
    own = client.post(url, {"from_phone": PHONES["A"], "to_phone": SENDERS["A"], "body": "hi"})
    if role in ("anonymous", "memberless"):
        _refused(own, role, "reply as A's patient")
        assert not InboundMessage.objects.exists()
    else:
        assert own.status_code == 302
        assert InboundMessage.objects.get().organization == world["A"]["org"]


def _ringing_call(build, org, tag: str) -> VoiceCall:
    """A reminder call of `org` ringing on a simulated phone."""
    practice = build.practice(org, name=f"Sim {tag} Calls")
    provider = build.provider(practice, hours=None)
    save_rule(
        ReminderRule(
            organization=org, offsets_minutes=[1440], channel="voice", send_event_messages=False
        )
    )
    patient = build.patient(org, home_practice=practice, given_name=f"Caller{tag}zz")
    start = (timezone.now() + timedelta(hours=30)).replace(second=0, microsecond=0)
    visit = Appointment.objects.create(
        organization=org, practice=practice, provider=provider, patient=patient,
        appointment_type=build.appointment_type(org), start=start,
        end=start + timedelta(minutes=20), status=AppointmentStatus.BOOKED,
        status_changed_at=timezone.now(), status_source=ChangeSource.FHIR, allow_overlap=True,
    )  # fmt: skip
    sync_reminders([visit.pk])
    message = OutboundMessage.objects.get(appointment=visit, kind=MessageKind.REMINDER)
    due = message.due_at + timedelta(seconds=1)
    Dispatcher(SimulatorGateway(), clock=lambda: due, hours=SendingHours(0, 24)).run_once()
    return VoiceCall.objects.get(outbound_message=message)


@pytest.mark.parametrize("role", ROLES)
def test_simulator_calls(client, world, build, settings, role):
    settings.CARELINE_CALLING_HOURS_START, settings.CARELINE_CALLING_HOURS_END = 0, 24
    settings.CARELINE_CALLS_PER_SECOND = 0
    calls = {tag: _ringing_call(build, world[tag]["org"], tag) for tag in ("A", "B")}
    _login(client, world, role)
    for name in ("simulator-answer", "simulator-key"):
        what = f"{name} on B's call"
        response = client.post(
            reverse(name, args=[calls["B"].token]), {"as": "person", "digits": "1"}
        )
        _refused(response, role, what)
        _assert_nothing_of_b(response, what)
        assert "CallerBzz" not in response.content.decode()
    calls["B"].refresh_from_db()
    assert calls["B"].status == "" and calls["B"].digits == ""
    own = client.post(reverse("simulator-answer", args=[calls["A"].token]), {"as": "person"})
    if role in ("anonymous", "memberless"):
        _refused(own, role, "answer A's call")
    else:
        assert own.status_code == 200
        assert "CallerAzz" in own.content.decode()
