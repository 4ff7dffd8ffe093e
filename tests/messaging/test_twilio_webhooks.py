"""Twilio's webhooks end to end, signed with the twilio package's own RequestValidator."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from careline.conversations.models import InboundMessage
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
