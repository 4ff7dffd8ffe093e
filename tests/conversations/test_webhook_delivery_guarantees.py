"""The inbound webhook's guarantees under load (issue 21): a text is acknowledged only once
it is stored, each MessageSid is stored and applied once however often and however
concurrently Twilio delivers it, and what cannot be stored in time is refused fast with
503 + Retry-After (Twilio sends it again) rather than queued."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client

from careline.conversations.inbound import interpret_waiting
from careline.conversations.models import InboundIntent, InboundMessage
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.models import ConsentEvent, PhoneConsent
from tests.messaging.test_twilio_webhooks import (
    BASE,
    ORG_NUMBER,
    PHONE,
    SMS_PATH,
    TOKEN,
    signed_post,
    sms_params,
)

DELIVERIES = 8


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE


@pytest.fixture
def org(build):
    org = build.organization(default_sender_number=ORG_NUMBER)
    practice = build.practice(org)
    build.patient(org, mobile_phone=PHONE, home_practice=practice)
    return org


def _all_at_once(count: int, work) -> list:
    """Run work(i) in `count` threads released together; their results (or exceptions)."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except Exception as exc:  # reported by the test, not lost in a thread
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_text_are_stored_and_applied_once(org):
    params = sms_params("STOP", sid="SMconcurrent")

    statuses = _all_at_once(
        DELIVERIES, lambda i: signed_post(Client(), SMS_PATH, params).status_code
    )

    assert statuses == [200] * DELIVERIES
    assert InboundMessage.objects.filter(provider_message_id="SMconcurrent").count() == 1
    # Two workers reading the queue at once still act on the text once.
    assert _all_at_once(2, lambda i: interpret_waiting()) in ([1, 0], [0, 1], [1, 1])
    assert PhoneConsent.objects.get(organization=org, phone=PHONE).opted_out
    assert ConsentEvent.objects.filter(organization=org, phone=PHONE).count() == 1
    assert OutboundMessage.objects.filter(kind=MessageKind.REPLY, to_address=PHONE).count() == 1


@contextmanager
def _write_lock_held():
    """Another connection holding what the webhook's INSERT needs: SQLite's write lock, or
    an EXCLUSIVE lock on the inbound table on PostgreSQL."""
    other = connections.create_connection("default")
    other.ensure_connection()
    raw = other.connection
    try:
        if other.vendor == "sqlite":
            raw.execute("BEGIN IMMEDIATE")
        else:
            raw.autocommit = False
            raw.execute(f"LOCK TABLE {InboundMessage._meta.db_table} IN EXCLUSIVE MODE")
        yield
    finally:
        raw.rollback()
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_text_that_cannot_be_stored_in_time_is_refused_fast_and_taken_on_retry(org, settings):
    settings.CARELINE_WEBHOOK_MAX_WAIT_SECONDS = 0.3
    params = sms_params("C", sid="SMbusy")

    with _write_lock_held():
        started = time.monotonic()
        refused = signed_post(Client(), SMS_PATH, params)
        waited = time.monotonic() - started

    assert refused.status_code == 503
    assert refused["Retry-After"] == "1"
    assert b"busy" in refused.content
    assert waited < 5  # the database's own timeout is 20 s
    assert not InboundMessage.objects.filter(provider_message_id="SMbusy").exists()
    # Twilio's retry, once the lock is gone, is stored.
    assert signed_post(Client(), SMS_PATH, params).status_code == 200
    assert InboundMessage.objects.filter(provider_message_id="SMbusy").count() == 1


def test_the_worker_reads_a_stored_text_and_sends_its_answer_in_the_same_round(org):
    assert signed_post(Client(), SMS_PATH, sms_params("HELP", sid="SMworker")).status_code == 200
    assert InboundMessage.objects.get(provider_message_id="SMworker").interpreted_at is None

    out = StringIO()
    call_command("worker", "--once", "--gateway", "simulator", stdout=out)

    assert out.getvalue().strip() == "sent=1, texts_interpreted=1"
    message = InboundMessage.objects.get(provider_message_id="SMworker")
    assert message.intent == InboundIntent.HELP
    assert message.reply.state == MessageState.DELIVERED
    out = StringIO()
    call_command("worker", "--once", "--gateway", "simulator", stdout=out)
    assert out.getvalue().strip() == "nothing due"
