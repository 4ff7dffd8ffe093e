"""Twilio's webhooks end to end, signed with the twilio package's own RequestValidator."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from careline.conversations.models import InboundIntent, InboundMessage
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.models import PhoneConsent

TOKEN = "webhook-test-token"
BASE = "https://careline.example.org"
PHONE = "+15125550142"
ORG_NUMBER = "+15125550100"
SMS_PATH = "/webhooks/twilio/sms"
STATUS_PATH = "/webhooks/twilio/status"
_sids = itertools.count(1)


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE


@pytest.fixture
def client() -> Client:
    # CSRF enforced as in production: the webhooks must not need a token.
    return Client(enforce_csrf_checks=True)


def signed_post(client, path: str, params: dict, *, token: str = TOKEN, url: str | None = None):
    signature = RequestValidator(token).compute_signature(url or BASE + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def sms_params(body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "MessageSid": sid or f"SM{next(_sids):032d}",
        "SmsSid": "ignored-when-MessageSid-is-there",
        "AccountSid": "AC" + "0" * 32,
        "From": PHONE,
        "To": ORG_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "FromCity": "AUSTIN",
    }


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
    assert message.organization == org


@pytest.mark.parametrize("path", [SMS_PATH, STATUS_PATH])
def test_missing_signature_is_403(client, org, path):
    response = client.post(path, sms_params("STOP"))
    assert response.status_code == 403
    assert InboundMessage.objects.count() == 0


@pytest.mark.parametrize(
    "forge",
    [
        {"token": "someone-elses-token"},
        {"url": "http://careline.example.org" + SMS_PATH},  # scheme Twilio did not call
        {"url": BASE + "/webhooks/twilio/other"},
    ],
)
def test_wrong_signature_is_403(client, org, forge):
    response = signed_post(client, SMS_PATH, sms_params("STOP"), **forge)
    assert response.status_code == 403
    assert not PhoneConsent.objects.exists()


def test_a_tampered_parameter_breaks_the_signature(client, org):
    params = sms_params("hello")
    signature = RequestValidator(TOKEN).compute_signature(BASE + SMS_PATH, params)
    params["Body"] = "STOP"
    response = client.post(SMS_PATH, params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403
    assert not PhoneConsent.objects.exists()


def test_unset_auth_token_refuses_everything(client, org, settings):
    settings.TWILIO_AUTH_TOKEN = ""
    response = signed_post(client, SMS_PATH, sms_params("STOP"), token="")
    assert response.status_code == 403


def test_query_string_is_part_of_the_signed_url(client, org):
    params = sms_params("hi")
    path = SMS_PATH + "?practice=P1"
    response = signed_post(client, path, params)
    assert response.status_code == 200


def test_base_url_with_a_path_prefix(client, org, settings):
    settings.CARELINE_BASE_URL = BASE + "/careline"
    response = signed_post(client, SMS_PATH, sms_params("hi"), url=BASE + "/careline" + SMS_PATH)
    assert response.status_code == 200


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

    assert InboundMessage.objects.filter(provider_message_id="SMreplay").count() == 1
    assert PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out
    assert OutboundMessage.objects.filter(kind=MessageKind.REPLY, to_address=PHONE).count() == 1


def test_start_then_ordinary_text_through_the_webhook(client, org):
    signed_post(client, SMS_PATH, sms_params("STOP"))
    signed_post(client, SMS_PATH, sms_params("yes"))
    assert PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out

    signed_post(client, SMS_PATH, sms_params("START"))
    assert not PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out


def test_help_through_the_webhook_while_opted_out(client, org):
    signed_post(client, SMS_PATH, sms_params("STOP"))
    signed_post(client, SMS_PATH, sms_params("HELP", sid="SMhelp"))

    assert InboundMessage.objects.get(provider_message_id="SMhelp").intent == InboundIntent.HELP
    reply = OutboundMessage.objects.filter(kind=MessageKind.REPLY).latest("id")
    assert "Msg & data rates may apply" in reply.body


def _sent_message(org, sid: str = "SMout1") -> OutboundMessage:
    now = timezone.now()
    return OutboundMessage.objects.create(
        organization=org,
        to_address=PHONE,
        sender=ORG_NUMBER,
        body="Reminder",
        kind=MessageKind.REMINDER,
        state=MessageState.SENT,
        provider_message_id=sid,
        due_at=now,
        created_at=now,
        sent_at=now,
    )


def status(client, sid: str, value: str, **extra):
    params = {"MessageSid": sid, "MessageStatus": value, "AccountSid": "AC" + "0" * 32}
    params.update(extra)
    return signed_post(client, STATUS_PATH, params)


def test_status_callbacks_out_of_order_stay_delivered(client, org):
    message = _sent_message(org)

    assert status(client, "SMout1", "delivered").status_code == 204
    assert status(client, "SMout1", "sent").status_code == 204
    assert status(client, "SMout1", "queued").status_code == 204

    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED


def test_failed_status_records_the_error_code(client, org):
    message = _sent_message(org)
    status(client, "SMout1", "undelivered", ErrorCode="30003")
    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    assert message.error_code == "30003"


def test_carrier_opt_out_error_is_recorded_as_opt_out(client, org):
    _sent_message(org)
    status(client, "SMout1", "failed", ErrorCode="21610")
    assert PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out


def test_status_for_an_unknown_message_is_accepted_and_ignored(client, org):
    assert status(client, "SMnobody", "delivered").status_code == 204


def test_status_without_a_status_is_a_clear_400(client, org):
    response = signed_post(client, STATUS_PATH, {"MessageSid": "SMout1"})
    assert response.status_code == 400
    assert b"MessageStatus" in response.content
