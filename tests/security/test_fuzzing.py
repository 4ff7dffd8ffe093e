"""Property-based fuzzing of the doors strangers can knock on: no input gives a 500."""

from __future__ import annotations

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from careline.conversations.inbound import UNREADABLE_NOTE, interpret_waiting
from careline.conversations.models import InboundMessage
from careline.integrations.hl7.receiving import receive_message
from careline.integrations.models import Hl7Message
from tests.integrations.conftest import sample

TOKEN = "fuzz-token"
BASE = "https://careline.example.org"
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)
phones = st.one_of(texts, st.from_regex(r"\+1[2-9]\d{9}", fullmatch=True))


@pytest.fixture
def signed(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE
    client = Client()

    def post(path: str, params: dict):
        signature = RequestValidator(TOKEN).compute_signature(BASE + path, params)
        return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)

    return post


@pytest.mark.django_db
@FUZZ
@given(
    sid=texts,
    sender=phones,
    to=phones,
    body=texts,
    extra=st.dictionaries(st.sampled_from(["NumMedia", "SmsStatus", "AccountSid"]), texts),
)
def test_signed_inbound_sms_of_any_shape_never_breaks_the_webhook(
    signed, sid, sender, to, body, extra
):
    response = signed(
        "/webhooks/twilio/sms", {"MessageSid": sid, "From": sender, "To": to, "Body": body, **extra}
    )
    assert response.status_code in (200, 400)
    # The worker's inbound pass reads whatever was stored without an error.
    interpret_waiting()
    assert not InboundMessage.objects.filter(interpreted_at__isnull=True).exists()
    assert not InboundMessage.objects.filter(note=UNREADABLE_NOTE).exists()


@pytest.mark.django_db
@FUZZ
@given(
    sid=texts,
    status=st.one_of(
        texts, st.sampled_from(["queued", "sent", "delivered", "undelivered", "failed", "read"])
    ),
    code=texts,
)
def test_status_callbacks_of_any_shape_never_break_the_webhook(signed, sid, status, code):
    response = signed(
        "/webhooks/twilio/status", {"MessageSid": sid, "MessageStatus": status, "ErrorCode": code}
    )
    assert response.status_code in (200, 204, 400)


@pytest.mark.django_db
@FUZZ
@given(body=texts)
def test_unsigned_requests_are_refused(body):
    response = Client().post("/webhooks/twilio/sms", {"MessageSid": "SMx", "Body": body})
    assert response.status_code == 403


def _mutations():
    base = sample("01-s12-new-athena-style.hl7")
    segments = base.split("\r")
    return st.one_of(
        texts,
        st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
        # A real message with one segment replaced by garbage, or cut anywhere.
        st.tuples(st.integers(0, len(segments) - 1), texts).map(
            lambda t: "\r".join(segments[: t[0]] + [t[1]] + segments[t[0] + 1 :])
        ),
        st.integers(0, len(base)).map(lambda n: base[:n]),
        st.tuples(st.integers(0, len(base) - 1), st.sampled_from("|^~\\&\r\n")).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] + 1 :]
        ),
    )


@pytest.mark.django_db
@FUZZ
@given(raw=_mutations())
def test_any_hl7_input_gets_an_ack_or_a_clean_refusal(feeds, raw):
    before = Hl7Message.objects.count()
    receipt = receive_message(raw)
    assert receipt.ack_code in ("AA", "AE", "AR", "")
    if receipt.ack_code:
        # A batch (FHS/BHS) is answered in its own envelope, even an empty one.
        assert receipt.ack.startswith(("MSH", "BHS", "FHS"))
    # Nothing received is lost: anything with a readable header is stored.
    assert Hl7Message.objects.count() >= before
