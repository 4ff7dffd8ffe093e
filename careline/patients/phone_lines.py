"""What kind of line each number is (PhoneLine): the one writer of that table.

Landlines cannot take texts, so a reminder to one is a call instead. A number is marked
when a feed says so (HL7 PID-13 equipment type PH without a CP, a FHIR telecom `phone`
that is not `mobile`) or when Twilio refuses or fails a text to it as not a mobile
(21614, 30006).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from careline.patients.models import LineType, PhoneLine


def note_line_type(
    *, organization_id: int, phone: str, line_type: str, source: str, at: datetime | None = None
) -> None:
    """Record what kind of line `phone` is, replacing what was known before."""
    if not phone:
        return
    PhoneLine.objects.update_or_create(
        organization_id=organization_id,
        phone=phone,
        defaults={"line_type": line_type, "source": source[:40], "noted_at": at or timezone.now()},
    )


def landlines(organization_ids: Iterable[int], phones: Iterable[str]) -> set[tuple[int, str]]:
    """The (organization id, number) pairs among `phones` known to be landlines."""
    phones = [p for p in set(phones) if p]
    if not phones:
        return set()
    return set(
        PhoneLine.objects.filter(
            organization_id__in=set(organization_ids),
            phone__in=phones,
            line_type=LineType.LANDLINE,
        ).values_list("organization_id", "phone")
    )


def is_landline(organization_id: int, phone: str) -> bool:
    return bool(landlines([organization_id], [phone]))
