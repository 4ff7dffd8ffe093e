"""Rules about sent messages: provider status reports, and replies to patients."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from careline.messaging.gateways.base import StatusUpdate
from careline.messaging.models import (
    Channel,
    MessageKind,
    MessageState,
    OutboundMessage,
    Priority,
)
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource, PhoneConsent

logger = logging.getLogger(__name__)

# Provider reports only move a message forward; terminal states never change again.
_PROGRESS = {
    MessageState.SCHEDULED: 0,
    MessageState.SENDING: 1,
    MessageState.SENT: 2,
    MessageState.DELIVERED: 3,
    MessageState.UNDELIVERED: 3,
    MessageState.FAILED: 3,
}
TERMINAL_STATES = (MessageState.DELIVERED, MessageState.UNDELIVERED, MessageState.FAILED)
# Twilio: "Attempt to send to unsubscribed recipient" — the carrier holds an opt-out.
OPTED_OUT_ERROR_CODES = {"21610"}
# An answer that could not go out within the hour is no longer an answer.
REPLY_EXPIRY = timedelta(hours=1)


def record_provider_opt_out(message: OutboundMessage, code: str) -> None:
    """The provider says this number opted out: put it in our ledger (once)."""
    if message.channel != Channel.SMS or not message.to_address:
        return
    already = PhoneConsent.objects.filter(
        organization_id=message.organization_id, phone=message.to_address, opted_out=True
    ).exists()
    if not already:
        record_consent(
            organization_id=message.organization_id,
            phone=message.to_address,
            opted_out=True,
            source=ConsentSource.PROVIDER_REPORT,
            detail=f"provider error {code} on message {message.pk}",
        )
        logger.info("Recorded provider opt-out for message %s", message.pk)


def apply_status_update(update: StatusUpdate) -> bool:
    """Apply a provider's delivery report. Idempotent and forward-only: reports may come
    twice and in any order, and a late "sent" never overwrites "delivered". Returns
    whether the message changed."""
    new_rank = _PROGRESS.get(update.state)
    if new_rank is None or new_rank < _PROGRESS[MessageState.SENT]:
        return False
    with transaction.atomic():
        message = (
            OutboundMessage.objects.select_for_update()
            .filter(provider_message_id=update.provider_message_id)
            .first()
        )
        if message is None:
            return False
        if update.error_code in OPTED_OUT_ERROR_CODES:
            record_provider_opt_out(message, update.error_code)
        if _PROGRESS.get(message.state, 99) >= new_rank:
            return False
        now = timezone.now()
        message.state = update.state
        message.sent_at = message.sent_at or now
        if update.error_code:
            message.error_code = update.error_code[:20]
        if update.state in TERMINAL_STATES:
            message.finished_at = now
        message.save(update_fields=["state", "sent_at", "error_code", "finished_at"])
    return True


def queue_reply(
    *,
    organization_id: int,
    to_phone: str,
    body: str,
    sender: str = "",
    patient_id: int | None = None,
    practice_id: int | None = None,
) -> OutboundMessage:
    """Queue an automatic answer to a patient's text; it goes ahead of everything else."""
    now = timezone.now()
    return OutboundMessage.objects.create(
        organization_id=organization_id,
        practice_id=practice_id,
        patient_id=patient_id,
        channel=Channel.SMS,
        to_address=to_phone,
        sender=sender,
        body=body,
        kind=MessageKind.REPLY,
        priority=Priority.REPLY,
        due_at=now,
        expires_at=now + REPLY_EXPIRY,
        created_at=now,
    )
