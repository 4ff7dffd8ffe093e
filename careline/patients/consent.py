"""Rules about patients: recording consent changes."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from careline.patients.models import ConsentChannel, ConsentEvent, PhoneConsent, email_key


def record_consent(
    *,
    organization_id: int,
    phone: str,
    opted_out: bool,
    source: str,
    detail: str = "",
    at: datetime | None = None,
    user=None,
    channel: str = ConsentChannel.SMS,
) -> ConsentEvent:
    """Append to the ledger and move the number's current state; the only writer of both."""
    at = at or timezone.now()
    with transaction.atomic():
        event = ConsentEvent.objects.create(
            organization_id=organization_id,
            phone=phone,
            channel=channel,
            kind=ConsentEvent.Kind.OPT_OUT if opted_out else ConsentEvent.Kind.OPT_IN,
            source=source,
            detail=detail[:200],
            occurred_at=at,
            recorded_by=user,
        )
        PhoneConsent.objects.update_or_create(
            organization_id=organization_id,
            phone=phone,
            defaults={
                "opted_out": opted_out,
                "source": source,
                "changed_at": at,
                "channel": channel,
            },
        )
    return event


def record_email_consent(
    *,
    organization_id: int,
    email: str,
    opted_out: bool,
    source: str,
    detail: str = "",
    at: datetime | None = None,
) -> ConsentEvent:
    """The same ledger for an email address (channel email): the address's emails stop
    or start again; texts to the patient's number are another entry's business."""
    return record_consent(
        organization_id=organization_id,
        phone=email_key(email),
        opted_out=opted_out,
        source=source,
        detail=detail,
        at=at,
        channel=ConsentChannel.EMAIL,
    )


def emails_opted_out(organization_ids: set[int], addresses: set[str]) -> set[tuple[int, str]]:
    """(organization, address) pairs among these whose email is opted out (email_key)."""
    keys = {email_key(a) for a in addresses if a}
    if not keys:
        return set()
    return set(
        PhoneConsent.objects.filter(
            channel=ConsentChannel.EMAIL,
            opted_out=True,
            phone__in=keys,
            organization_id__in=organization_ids,
        ).values_list("organization_id", "phone")
    )
