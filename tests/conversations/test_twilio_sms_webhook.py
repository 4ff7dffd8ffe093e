"""Texts patients send, through Twilio's signed webhook (careline.conversations.webhooks).
The signature checks themselves are tested with the status webhook in
tests/messaging/test_twilio_webhooks.py."""

from __future__ import annotations

import pytest
from django.test import Client

from careline.conversations.inbound import interpret_waiting
from careline.conversations.models import InboundIntent, InboundMessage
from careline.messaging.models import MessageKind, OutboundMessage
from careline.patients.models import PhoneConsent
from tests.messaging.test_twilio_webhooks import (
    BASE,
    ORG_NUMBER,
    PHONE,
    SMS_PATH,
    TOKEN,
    signed_post,
    sms_params,
)


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE


@pytest.fixture
def client() -> Client:
    # CSRF enforced as in production: the webhook must not need a token.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def org(build):
    org = build.organization(default_sender_number=ORG_NUMBER)
    practice = build.practice(org)
    build.patient(org, mobile_phone=PHONE, home_practice=practice)
    return org


def test_signed_sms_is_stored_and_answered_with_empty_twiml(client, org):
    response = signed_post(client, SMS_PATH, sms_params("See you then", sid="SMok"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert b"<Response" in response.content and b"<Message" not in response.content
    message = InboundMessage.objects.get(provider_message_id="SMok")
    assert message.body == "See you then"
    # Stored, not read yet: the worker's inbound pass interprets it.
    assert message.interpreted_at is None and message.organization is None
    assert interpret_waiting() == 1
    message.refresh_from_db()
    assert message.organization == org and message.interpreted_at is not None


def test_get_is_not_allowed(client, org):
    assert client.get(SMS_PATH).status_code == 405


def test_incomplete_sms_is_a_clear_400(client, org):
    params = sms_params("hi")
    del params["MessageSid"], params["SmsSid"], params["To"]
    response = signed_post(client, SMS_PATH, params)
    assert response.status_code == 400
    assert b"MessageSid" in response.content and b"To" in response.content


def test_stop_replayed_three_times_is_one_row_and_one_confirmation(client, org):
    params = sms_params("STOP", sid="SMreplay")
    for _ in range(3):
        assert signed_post(client, SMS_PATH, params).status_code == 200
        interpret_waiting()

    assert InboundMessage.objects.filter(provider_message_id="SMreplay").count() == 1
    assert PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out
    assert OutboundMessage.objects.filter(kind=MessageKind.REPLY, to_address=PHONE).count() == 1


def test_start_then_ordinary_text_through_the_webhook(client, org):
    signed_post(client, SMS_PATH, sms_params("STOP"))
    signed_post(client, SMS_PATH, sms_params("yes"))
    interpret_waiting()
    assert PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out

    signed_post(client, SMS_PATH, sms_params("START"))
    interpret_waiting()
    assert not PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out


def test_help_through_the_webhook_while_opted_out(client, org):
    signed_post(client, SMS_PATH, sms_params("STOP"))
    signed_post(client, SMS_PATH, sms_params("HELP", sid="SMhelp"))
    interpret_waiting()

    assert InboundMessage.objects.get(provider_message_id="SMhelp").intent == InboundIntent.HELP
    reply = OutboundMessage.objects.filter(kind=MessageKind.REPLY).latest("id")
    assert "Msg & data rates may apply" in reply.body
