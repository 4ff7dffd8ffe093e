"""Twilio's webhooks arrive late, twice and out of order, as real webhooks do.

Status callbacks in any order and with duplicates leave a message in the furthest state
Twilio reported; an inbound text replayed three times (one after another or all at once)
is one row and one action.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from careline.conversations.inbound import interpret_waiting
from careline.conversations.models import (
    Conversation,
    ConversationReply,
    InboundAction,
    InboundMessage,
)
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.models import ConsentEvent
from careline.scheduling.models import AppointmentEvent, AppointmentStatus
from tests.conversations.conftest import ALWAYS_OPEN, BASE, SMS_PATH, TOKEN, TwoWay

STATUS_PATH = "/webhooks/twilio/status"
# One message's life at Twilio; a message ends in exactly one of the last three.
ON_THE_WAY = ["queued", "sending", "sent"]
ENDINGS = {
    "delivered": MessageState.DELIVERED,
    "undelivered": MessageState.UNDELIVERED,
    "failed": MessageState.FAILED,
}
_sids = itertools.count(1)


def signed_post(client: Client, path: str, params: dict[str, str]):
    signature = RequestValidator(TOKEN).compute_signature(BASE + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.fixture
def twoway(build, settings) -> TwoWay:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE
    settings.CARELINE_OFFICE_HOURS = ALWAYS_OPEN
    return TwoWay(build)


@st.composite
def callback_deliveries(draw) -> tuple[list[str], str | None]:
    """Some of one message's status callbacks (any may be lost), each delivered 1-3 times,
    shuffled. Returns (the deliveries, the furthest status among them or None)."""
    ending = draw(st.sampled_from(sorted(ENDINGS)))
    life = [*ON_THE_WAY, ending]
    reported = draw(st.lists(st.sampled_from(life), min_size=1, max_size=4, unique=True))
    deliveries = [s for s in reported for _ in range(draw(st.integers(1, 3)))]
    furthest = max(reported, key=life.index)
    return draw(st.permutations(deliveries)), furthest


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=callback_deliveries())
def test_status_callbacks_in_any_order_end_in_the_furthest_state(twoway, case):
    deliveries, furthest = case
    sid = f"SM{next(_sids):032x}"
    now = timezone.now()
    message = OutboundMessage.objects.create(
        organization=twoway.org,
        to_address=twoway.new_phone(),
        sender=twoway.practice.phone,
        body="Reminder",
        kind=MessageKind.REMINDER,
        state=MessageState.SENT,  # Twilio accepted it: the worker's last word
        provider_message_id=sid,
        due_at=now,
        created_at=now,
        sent_at=now,
    )
    for status in deliveries:
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
        if status in ("undelivered", "failed"):
            params["ErrorCode"] = "30003"
        assert signed_post(twoway.client, STATUS_PATH, params).status_code == 204

    message.refresh_from_db()
    assert message.state == ENDINGS.get(furthest, MessageState.SENT), deliveries
    if furthest in ENDINGS:
        assert message.finished_at is not None
        assert message.error_code == ("" if furthest == "delivered" else "30003")


def _footprint(phone: str) -> dict[str, int]:
    """Everything a text from this phone can cause, counted."""
    return {
        "inbound": InboundMessage.objects.filter(from_phone=phone).count(),
        "outbound": OutboundMessage.objects.filter(to_address=phone).count(),
        "appointment_events": AppointmentEvent.objects.filter(
            appointment__patient__mobile_phone=phone
        ).count(),
        "consent_events": ConsentEvent.objects.filter(phone=phone).count(),
        "conversations": Conversation.objects.filter(phone=phone).count(),
        "staff_replies": ConversationReply.objects.filter(conversation__phone=phone).count(),
    }


def _reminded_patient(twoway: TwoWay):
    patient = twoway.patient()
    visit = twoway.visit(patient, twoway.local(2, 10))
    assert twoway.send_reminders(visit)
    return patient, visit


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ("C", InboundAction.CONFIRMED),
        ("STOP", None),  # consent keywords are acted on before reply understanding
        ("Is there parking near the clinic?", InboundAction.TO_INBOX),
    ],
)
def test_an_inbound_text_replayed_three_times_is_one_row_and_one_action(twoway, body, action):
    patient, visit = _reminded_patient(twoway)
    phone = patient.mobile_phone
    before = _footprint(phone)
    sid = f"SM{next(_sids):032x}"

    first = twoway.text(phone, body, sid=sid)
    after_first = _footprint(phone)
    twoway.text(phone, body, sid=sid)
    twoway.text(phone, body, sid=sid)

    assert _footprint(phone) == after_first
    assert after_first["inbound"] == before["inbound"] + 1
    if action is not None:
        assert first.action_taken == action
    if body == "C":
        visit.refresh_from_db()
        assert visit.status == AppointmentStatus.CONFIRMED
        assert after_first["appointment_events"] == before["appointment_events"] + 1
        assert len(twoway.replies_to(phone)) == 1
    elif body == "STOP":
        assert after_first["consent_events"] == before["consent_events"] + 1
        assert len(twoway.replies_to(phone)) == 1
    else:
        assert after_first["conversations"] == before["conversations"] + 1
        assert first.conversation.messages.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_delivered_three_times_at_once_acts_once(build, settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE
    settings.CARELINE_OFFICE_HOURS = ALWAYS_OPEN
    twoway = TwoWay(build)
    patient, visit = _reminded_patient(twoway)
    phone = patient.mobile_phone
    before = _footprint(phone)
    params = {
        "MessageSid": f"SM{next(_sids):032x}",
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": twoway.org.default_sender_number,
        "Body": "yes",
        "NumMedia": "0",
    }
    start = threading.Barrier(3)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            start.wait(timeout=10)
            statuses.append(signed_post(Client(), SMS_PATH, params).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert statuses == [200, 200, 200]
    interpret_waiting()  # the worker's inbound pass: the webhook only stored the text
    after = _footprint(phone)
    assert after["inbound"] == before["inbound"] + 1
    assert after["appointment_events"] == before["appointment_events"] + 1
    assert after["outbound"] == before["outbound"] + 1  # one "you are confirmed" reply
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED
    message = InboundMessage.objects.get(provider_message_id=params["MessageSid"])
    assert message.action_taken == InboundAction.CONFIRMED
