"""Rules about patients: recording consent changes."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from careline.patients.models import ConsentEvent, PhoneConsent


def record_consent(
    *,
    organization_id: int,
    phone: str,
    opted_out: bool,
    source: str,
    detail: str = "",
    channel: str = "",
    at: datetime | None = None,
    user=None,
) -> ConsentEvent:
    """Append to the ledger and move the number's current state; the only writer of both."""
    at = at or timezone.now()
    with transaction.atomic():
        event = ConsentEvent.objects.create(
            organization_id=organization_id,
            phone=phone,
            kind=ConsentEvent.Kind.OPT_OUT if opted_out else ConsentEvent.Kind.OPT_IN,
            source=source,
            detail=detail[:200],
            channel=channel,
            occurred_at=at,
            recorded_by=user,
        )
        PhoneConsent.objects.update_or_create(
            organization_id=organization_id,
            phone=phone,
            defaults={"opted_out": opted_out, "source": source, "changed_at": at},
        )
    return event
