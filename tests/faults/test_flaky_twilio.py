"""Twilio fails 30% of all calls (sends and the list calls of reconciliation) with timeouts
and 5xx: the real TwilioGateway and the worker still settle every message as sent or as
failed with a reason, none lost and none sent twice."""

from __future__ import annotations

from collections import Counter

import pytest

from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.twilio import TwilioGateway
from careline.messaging.models import MessageState, OutboundMessage
from tests.faults.flaky_twilio import FlakyTwilio, running_flaky_twilio
from tests.faults.support import queue_texts

ACCOUNT_SID = "AC" + "5eed" * 8
AUTH_TOKEN = "flaky-auth-token"
CLIENT_TIMEOUT = 0.15
MAX_PASSES = 40


def _run_worker_until_quiet(fake: FlakyTwilio) -> None:
    """Worker passes until nothing is left to do. Between passes the retries are made due
    at once instead of waiting out their backoff."""
    dispatcher = Dispatcher(TwilioGateway(), hours=SendingHours(0, 24), batch_size=25)
    for _ in range(MAX_PASSES):
        dispatcher.run_once()
        fake.wait_until_idle()
        OutboundMessage.objects.filter(state=MessageState.SCHEDULED).update(next_attempt_at=None)
        if not OutboundMessage.objects.filter(
            state__in=(MessageState.SCHEDULED, MessageState.SENDING)
        ).exists():
            return
    pytest.fail(f"still not settled after {MAX_PASSES} passes")


def _settle(build, settings, messages: int, seed: int) -> FlakyTwilio:
    with running_flaky_twilio(
        ACCOUNT_SID, AUTH_TOKEN, failure_rate=0.3, late_by=CLIENT_TIMEOUT + 0.15, seed=seed
    ) as fake:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_API_BASE_URL = fake.base_url
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.TWILIO_FROM_NUMBER = ""
        settings.TWILIO_TIMEOUT_SECONDS = CLIENT_TIMEOUT
        settings.CARELINE_SEND_MAX_ATTEMPTS = 5
        queue_texts(build.organization(), messages, body="Your visit is confirmed ({n}).")
        _run_worker_until_quiet(fake)
    return fake


@pytest.mark.parametrize(
    ("messages", "seed"),
    [
        pytest.param(120, 1, id="ci"),
        pytest.param(1000, 2, id="full", marks=pytest.mark.soak),
    ],
)
def test_every_message_ends_sent_or_failed_with_a_reason_never_twice(
    build, settings, messages, seed
):
    fake = _settle(build, settings, messages, seed)

    rows = list(OutboundMessage.objects.order_by("id"))
    states = Counter(m.state for m in rows)
    assert set(states) <= {MessageState.SENT, MessageState.DELIVERED, MessageState.FAILED}, states
    assert len(rows) == messages
    # The faults really happened, on sends and on reconciliation's list calls alike.
    assert fake.injected["timeout"] >= 5 and fake.injected["5xx"] >= 5, fake.injected
    assert any(method == "GET" for method, _, _ in fake.requests)

    for m in rows:
        at_twilio = fake.posted_to(m.to_address)
        assert len(at_twilio) <= 1, f"message {m.pk} was sent {len(at_twilio)} times"
        if m.state == MessageState.FAILED:
            # (Whether Twilio has it anyway is the next test's question.)
            assert m.error_code and m.error_message, f"message {m.pk} failed without a reason"
        else:
            # Recorded as sent: Twilio has it, under the id the outbox holds.
            assert [t["sid"] for t in at_twilio] == [m.provider_message_id], m.pk
            assert at_twilio[0]["body"] == m.body

    # Late answers to sends were found by reconciliation, not sent again.
    recovered = [m for m in rows if m.state != MessageState.FAILED and m.attempts > 1]
    assert recovered, "no message needed a retry; the faults proved nothing"


def test_a_message_marked_failed_never_reached_the_patient(build, settings):
    # Twilio takes the message, but its answers (to the send, then to the list call that
    # would find it) come too late for the client; then Twilio is well again.
    with running_flaky_twilio(
        ACCOUNT_SID, AUTH_TOKEN, failure_rate=0, outage_calls=2, late_by=CLIENT_TIMEOUT + 0.15
    ) as fake:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_API_BASE_URL = fake.base_url
        settings.TWILIO_TIMEOUT_SECONDS = CLIENT_TIMEOUT
        settings.CARELINE_SEND_MAX_ATTEMPTS = 2
        settings.CARELINE_WORKER_LEASE_SECONDS = 0
        queue_texts(build.organization(), 1, body="Your visit is confirmed.")
        _run_worker_until_quiet(fake)
        message = OutboundMessage.objects.get()

    at_twilio = fake.posted_to(message.to_address)
    if len(at_twilio) != 1:
        pytest.fail(f"Twilio should hold the message once, not {len(at_twilio)} times")
    assert message.state in (MessageState.SENT, MessageState.DELIVERED), message.error_message
    assert message.provider_message_id == at_twilio[0]["sid"]
