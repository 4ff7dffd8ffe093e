"""Reminder calls (VoiceCall): the one writer of that table.

A call is an outbox row with channel voice; this module keeps what only a call has: the
unguessable token of the URLs Twilio calls back (the TwiML, the key presses, the status
reports), Twilio's call id and status, the call's length, what was pressed and what came
of it. The dialog itself (what the patient hears, what each key does) is
careline.conversations.calls; outbox states move through careline.messaging.outbox.
"""

from __future__ import annotations

import logging
import secrets
import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from careline.messaging import outbox
from careline.messaging.compliance import SendingHours, call_retry_time
from careline.messaging.gateways.base import StatusUpdate
from careline.messaging.models import MessageState, OutboundMessage, VoiceCall

log = logging.getLogger(__name__)

VOICE_PATH = "/webhooks/twilio/voice"
TOKEN_BYTES = 24
# Twilio's CallStatus → the outbox state it moves the call's row to; a busy line or no
# answer did not reach the patient (undelivered, so it does not count against the limits
# and the retry may go out), a failed call never rang.
CALL_STATES = {
    "queued": MessageState.SENT,
    "initiated": MessageState.SENT,
    "ringing": MessageState.SENT,
    "in-progress": MessageState.SENT,
    "answered": MessageState.SENT,
    "completed": MessageState.DELIVERED,
    "busy": MessageState.UNDELIVERED,
    "no-answer": MessageState.UNDELIVERED,
    "canceled": MessageState.UNDELIVERED,
    "failed": MessageState.FAILED,
}
RETRIED_STATUSES = ("busy", "no-answer")
FINAL_STATUSES = ("completed", "busy", "no-answer", "canceled", "failed")


def calling_hours() -> SendingHours:
    return SendingHours(settings.CARELINE_CALLING_HOURS_START, settings.CARELINE_CALLING_HOURS_END)


def open_call(message_id: int) -> VoiceCall:
    """The call record of outbox row `message_id`, created with its token on first use
    (a retried attempt of the same row keeps its token)."""
    now = timezone.now()
    call, _ = VoiceCall.objects.get_or_create(
        outbound_message_id=message_id,
        defaults={
            "token": secrets.token_urlsafe(TOKEN_BYTES),
            "created_at": now,
            "updated_at": now,
        },
    )
    return call


def url(call: VoiceCall, step: str = "") -> str:
    """The public URL of one of the call's webhooks: "" (the TwiML), "gather", "status"."""
    path = f"{VOICE_PATH}/{call.token}"
    return settings.CARELINE_BASE_URL + (f"{path}/{step}" if step else path)


def find_call(token: str) -> VoiceCall | None:
    """The call a webhook URL's token names, with its message, visit, patient and
    practice; None for a token no call has."""
    if not token or len(token) > 64:
        return None
    return (
        VoiceCall.objects.select_related(
            "outbound_message__appointment__patient",
            "outbound_message__appointment__practice__organization",
            "outbound_message__patient",
            "outbound_message__practice__organization",
        )
        .filter(token=token)
        .first()
    )


def note_progress(
    call: VoiceCall,
    *,
    call_sid: str = "",
    answered_by: str | None = None,
    digits: str = "",
    awaiting: str | None = None,
    prompts: int | None = None,
    outcome: str | None = None,
) -> None:
    """Record what a TwiML request told or decided about the call."""
    fields = ["updated_at"]
    call.updated_at = timezone.now()
    if call_sid and not call.call_sid:
        call.call_sid = call_sid[:64]
        fields.append("call_sid")
    if answered_by is not None:
        call.answered_by = answered_by[:30]
        fields.append("answered_by")
    if digits:
        call.digits = (call.digits + digits)[-20:]
        fields.append("digits")
    if awaiting is not None:
        call.awaiting = awaiting
        fields.append("awaiting")
    if prompts is not None:
        call.prompts = prompts
        fields.append("prompts")
    if outcome is not None:
        call.outcome = outcome
        fields.append("outcome")
    call.save(update_fields=fields)


def record_status(
    call: VoiceCall,
    *,
    call_sid: str,
    status: str,
    duration: int | None,
    now: datetime | None = None,
) -> OutboundMessage | None:
    """A status callback: the call's status and length, the outbox row moved forward, and
    for a busy line or no answer one more try later the same day within calling hours.
    Returns the retry's outbox row when one was queued."""
    now = now or timezone.now()
    status = status.lower()
    with transaction.atomic():
        locked = VoiceCall.objects.select_for_update().get(pk=call.pk)
        if locked.status in FINAL_STATUSES:
            return None  # a report repeated or out of order: the call is over
        locked.status = status
        if call_sid and not locked.call_sid:
            locked.call_sid = call_sid[:64]
        if duration is not None:
            locked.duration_seconds = duration
        locked.updated_at = now
        locked.save(update_fields=["status", "call_sid", "duration_seconds", "updated_at"])
        message = locked.outbound_message
        state = CALL_STATES.get(status)
        if state is not None:
            failed = status in FINAL_STATUSES and state != MessageState.DELIVERED
            outbox.apply_status_update(
                StatusUpdate(
                    provider_message_id=locked.call_sid,
                    state=state,
                    error_code=status if failed else "",
                ),
                message_id=message.pk,
            )
        if status not in RETRIED_STATUSES or outbox.is_call_retry(message):
            return None
        zones = _zones(message)
        at = call_retry_time(
            now,
            zones,
            calling_hours(),
            timedelta(minutes=settings.CARELINE_CALL_RETRY_MINUTES),
        )
        if at is None or (message.visit_start is not None and at >= message.visit_start):
            log.info("Call %s: %s, no retry fits today's calling hours", call.pk, status)
            return None
        retry = outbox.queue_call_retry(message, due_at=at)
        log.info("Call %s: %s, retry queued as message %s", call.pk, status, retry and retry.pk)
        return retry


def _zones(message: OutboundMessage) -> tuple[zoneinfo.ZoneInfo, ...]:
    practice = message.practice or (message.appointment.practice if message.appointment else None)
    return (practice.zone,) if practice is not None else (zoneinfo.ZoneInfo("America/New_York"),)


def call_of_message(message_id: int) -> VoiceCall | None:
    return VoiceCall.objects.filter(outbound_message_id=message_id).first()
