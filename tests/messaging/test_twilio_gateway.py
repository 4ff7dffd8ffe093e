"""The Twilio gateway, driven through the real `twilio` client against a local fake API."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from careline.messaging.gateways.base import GatewayError, OutgoingSms, get_gateway
from careline.messaging.gateways.twilio import TwilioGateway
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from tests.messaging.fake_twilio import (
    INVALID_NUMBER,
    NOT_MOBILE,
    OPTED_OUT,
    SERVER_ERROR,
    TOO_MANY_REQUESTS,
    FakeError,
    running_fake_twilio,
)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
PATIENT = "+15125550123"
PRACTICE_NUMBER = "+15125550100"


@pytest.fixture
def fake(settings):
    with running_fake_twilio(ACCOUNT_SID, AUTH_TOKEN) as server:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_API_BASE_URL = server.base_url
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.TWILIO_FROM_NUMBER = ""
        settings.TWILIO_TIMEOUT_SECONDS = 2
        settings.CARELINE_BASE_URL = "https://careline.example.org"
        yield server


def sms(body: str = "Hi Ana, reminder: visit Tue 9:00 AM. Reply C to confirm", **kw):
    kw.setdefault("message_id", 0)
    kw.setdefault("to", PATIENT)
    kw.setdefault("sender", PRACTICE_NUMBER)
    kw.setdefault("status_callback_url", None)
    return OutgoingSms(body=body, **kw)


def posted(fake) -> dict[str, str]:
    method, _, params = fake.requests[-1]
    assert method == "POST"
    return {k: v[0] for k, v in params.items()}


def test_get_gateway_builds_the_twilio_gateway(fake):
    assert isinstance(get_gateway("twilio"), TwilioGateway)


def test_send_from_a_number_posts_twilio_form_with_status_callback(fake):
    result = TwilioGateway().send(sms())

    assert posted(fake) == {
        "To": PATIENT,
        "From": PRACTICE_NUMBER,
        "Body": "Hi Ana, reminder: visit Tue 9:00 AM. Reply C to confirm",
        "StatusCallback": "https://careline.example.org/webhooks/twilio/status",
    }
    assert result.provider_message_id in fake.messages
    assert result.provider_message_id.startswith("SM")
    assert result.state == "sent"


def test_send_through_a_messaging_service_sid(fake):
    TwilioGateway().send(sms(sender=SERVICE_SID, status_callback_url="https://x.test/cb"))

    params = posted(fake)
    assert params["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in params
    assert params["StatusCallback"] == "https://x.test/cb"


def test_configured_service_goes_along_with_the_practice_number(fake, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = SERVICE_SID
    TwilioGateway().send(sms())

    params = posted(fake)
    assert params["From"] == PRACTICE_NUMBER
    assert params["MessagingServiceSid"] == SERVICE_SID


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ({"TWILIO_FROM_NUMBER": "+15125550999"}, {"From": "+15125550999"}),
        ({"TWILIO_MESSAGING_SERVICE_SID": SERVICE_SID}, {"MessagingServiceSid": SERVICE_SID}),
    ],
)
def test_blank_sender_uses_the_configured_one(fake, settings, configured, expected):
    for name, value in configured.items():
        setattr(settings, name, value)
    TwilioGateway().send(sms(sender=""))

    params = posted(fake)
    assert {k: params[k] for k in expected} == expected


def test_no_sender_anywhere_is_a_permanent_error_and_nothing_is_posted(fake):
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().send(sms(sender=""))
    assert raised.value.code == "no_sender"
    assert not raised.value.transient
    assert fake.requests == []


def test_missing_credentials_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.TWILIO_AUTH_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="TWILIO_ACCOUNT_SID|TWILIO_AUTH_TOKEN"):
        TwilioGateway()


@pytest.mark.parametrize(
    ("error", "code", "transient"),
    [
        (OPTED_OUT, "21610", False),
        (INVALID_NUMBER, "21211", False),
        (NOT_MOBILE, "21614", False),
        (FakeError(400, 21602, "Message body is required."), "21602", False),
        (SERVER_ERROR, "20500", True),
        (FakeError(503, 0, "Service Unavailable"), "503", True),
        (TOO_MANY_REQUESTS, "20429", True),
        (FakeError(429, 0, "Too Many Requests"), "429", True),
    ],
)
def test_twilio_errors_are_classified(fake, error, code, transient):
    fake.next_errors.append(error)
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().send(sms())
    assert raised.value.code == code
    assert raised.value.transient is transient


def test_error_messages_never_quote_the_patients_number(fake):
    fake.number_errors[PATIENT] = FakeError(
        400, 21211, f"The 'To' number {PATIENT} is not a valid phone number."
    )
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().send(sms())
    assert raised.value.code == "21211"
    assert PATIENT not in str(raised.value)
    assert "5550123" not in str(raised.value)


def test_wrong_credentials_are_retried_not_failed(fake, settings):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().send(sms())
    assert raised.value.code == "20003"
    assert raised.value.transient


def test_unreachable_twilio_is_transient(fake, settings):
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().send(sms())
    assert raised.value.code == "network"
    assert raised.value.transient


def _outbox_row(build, **kw) -> OutboundMessage:
    org = build.organization()
    now = timezone.now()
    kw.setdefault("created_at", now - timedelta(hours=1))
    return OutboundMessage.objects.create(
        organization=org,
        to_address=PATIENT,
        sender=PRACTICE_NUMBER,
        kind=MessageKind.REMINDER,
        state=MessageState.SENDING,
        due_at=now,
        claimed_at=now,
        **kw,
    )


def test_timed_out_send_that_reached_twilio_is_found_not_resent(fake, settings, build):
    settings.TWILIO_TIMEOUT_SECONDS = 0.2
    fake.delay = 0.5
    row = _outbox_row(build)
    message = sms(message_id=row.pk)
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().send(message)
    assert raised.value.code == "timeout"
    assert raised.value.transient

    deadline = time.monotonic() + 3
    while not fake.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    fake.delay = 0
    # The worker re-claims the row before it reconciles; that must not hide the attempt.
    OutboundMessage.objects.filter(pk=row.pk).update(
        claimed_at=timezone.now() + timedelta(minutes=30)
    )
    found = TwilioGateway().find_sent(message)

    assert found is not None
    assert found.provider_message_id == next(iter(fake.messages))
    assert len([r for r in fake.requests if r[0] == "POST"]) == 1


def test_find_sent_returns_none_when_twilio_has_no_such_message(fake, build):
    row = _outbox_row(build)
    TwilioGateway().send(sms(body="another text", message_id=row.pk))

    assert TwilioGateway().find_sent(sms(message_id=row.pk)) is None
    # It asked by To, From and DateSent, the way Twilio's list filters work.
    _, _, query = next(r for r in fake.requests if r[0] == "GET")
    assert query["To"] == [PATIENT]
    assert query["From"] == [PRACTICE_NUMBER]
    assert query["DateSent>"] == [(row.created_at - timedelta(minutes=5)).date().isoformat()]


def test_find_sent_reports_delivered(fake, build):
    row = _outbox_row(build)
    message = sms(message_id=row.pk)
    twin = fake.add_message(
        to=PATIENT, from_=PRACTICE_NUMBER, body=message.body, sent_at=timezone.now()
    )

    found = TwilioGateway().find_sent(message)

    assert found.provider_message_id == twin["sid"]
    assert found.state == "delivered"


def test_find_sent_finds_a_message_still_queued_at_twilio(fake, build):
    fake.hold_in_queue = True
    row = _outbox_row(build)
    message = sms(message_id=row.pk)
    sent = TwilioGateway().send(message)

    assert fake.messages[sent.provider_message_id]["date_sent"] is None
    assert TwilioGateway().find_sent(message).provider_message_id == sent.provider_message_id


def test_find_sent_ignores_the_same_text_sent_before_this_row_existed(fake, build):
    """A text like this one sent before the row was created cannot be this row's."""
    row = _outbox_row(build)
    message = sms(message_id=row.pk)
    fake.add_message(
        to=PATIENT,
        from_=PRACTICE_NUMBER,
        body=message.body,
        sent_at=row.created_at - timedelta(days=1),
    )

    assert TwilioGateway().find_sent(message) is None


def test_find_sent_skips_a_twin_that_belongs_to_another_row(fake, build):
    """The 72 h and 24 h reminders of one visit can read alike: each Twilio message
    belongs to one row."""
    earlier = fake.add_message(
        to=PATIENT, from_=PRACTICE_NUMBER, body="Reply STOP to opt out", sent_at=timezone.now()
    )
    _outbox_row(build, provider_message_id=earlier["sid"], body="Reply STOP to opt out")
    row = _outbox_row(build)

    assert TwilioGateway().find_sent(sms(body="Reply STOP to opt out", message_id=row.pk)) is None


def test_find_sent_ignores_inbound_texts_and_other_services(fake, build):
    row = _outbox_row(build)
    message = sms(sender=SERVICE_SID, message_id=row.pk)
    now = timezone.now()
    fake.add_message(to=PATIENT, from_=PATIENT, body=message.body, sent_at=now, direction="inbound")
    fake.add_message(
        to=PATIENT, from_="+15125550111", body=message.body, sent_at=now,
        messaging_service_sid="MG" + "1" * 32,
    )  # fmt: skip
    assert TwilioGateway().find_sent(message) is None

    ours = fake.add_message(
        to=PATIENT, from_="+15125550111", body=message.body, sent_at=now,
        messaging_service_sid=SERVICE_SID,
    )  # fmt: skip
    assert TwilioGateway().find_sent(message).provider_message_id == ours["sid"]


def test_find_sent_reads_every_page(fake, build):
    row = _outbox_row(build)
    message = sms(message_id=row.pk)
    now = timezone.now()
    target = fake.add_message(to=PATIENT, from_=PRACTICE_NUMBER, body=message.body, sent_at=now)
    for n in range(130):
        later = now + timedelta(seconds=n + 1)
        fake.add_message(to=PATIENT, from_=PRACTICE_NUMBER, body=f"other {n}", sent_at=later)

    assert TwilioGateway().find_sent(message).provider_message_id == target["sid"]
    assert len([r for r in fake.requests if r[0] == "GET"]) >= 2


def test_find_sent_raises_when_twilio_cannot_answer(fake, build):
    row = _outbox_row(build)
    fake.next_errors.append(SERVER_ERROR)
    with pytest.raises(GatewayError) as raised:
        TwilioGateway().find_sent(sms(message_id=row.pk))
    assert raised.value.transient


def test_find_sent_sees_through_smart_encoding_and_appended_opt_out_words(fake, build):
    row = _outbox_row(build)
    message = sms(
        body="Ana\u2019s visit \u2014 Tue 9:00\u2026 Reply C to confirm", message_id=row.pk
    )
    rewritten = fake.add_message(
        to=PATIENT,
        from_=PRACTICE_NUMBER,
        body="Ana's visit - Tue 9:00... Reply C to confirm. Reply STOP to unsubscribe.",
        sent_at=timezone.now(),
    )

    assert TwilioGateway().find_sent(message).provider_message_id == rewritten["sid"]
