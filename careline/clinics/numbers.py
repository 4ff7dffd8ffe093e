"""Sender numbers: each texting number belongs to exactly one organization.

The one writer of `SenderNumber`. Every door that sets an organization's default sender
or a practice's texting number (the settings page, the admin, FHIR Location) claims the
number here first; the unique `phone` column refuses a second organization even when
two requests race.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from careline.clinics.models import Organization, Practice, SenderNumber


class NumberTaken(ValidationError):
    """The number already belongs to another organization."""

    def __init__(self, phone: str, owner_id: int):
        self.phone = phone
        self.owner_id = owner_id
        super().__init__(
            f"{phone} is already the texting number of another organization "
            f"(organization #{owner_id}); a number can belong to one organization only.",
            code="sender_number_taken",
        )


def owner_of(phone: str) -> int | None:
    """The organization texting from this number: its claim, else (rows from before claims
    existed) the organization whose practice or default sender uses it."""
    claimed = SenderNumber.objects.filter(phone=phone).values_list("organization_id", flat=True)
    for organization_id in claimed:
        return organization_id
    used = sorted(
        {
            *Organization.objects.filter(default_sender_number=phone).values_list("id", flat=True),
            *Practice.objects.filter(sender_number=phone).values_list("organization_id", flat=True),
        }
    )
    return used[0] if used else None


def check_sender_number(organization_id: int, phone: str) -> None:
    """Raise NumberTaken when another organization texts from `phone`."""
    if not phone:
        return
    owner = owner_of(phone)
    if owner is not None and owner != organization_id:
        raise NumberTaken(phone, owner)


def claim_sender_number(organization_id: int, phone: str) -> None:
    """Make `phone` this organization's; NumberTaken when another organization has it.

    Call inside the transaction that saves the number, before saving it.
    """
    if not phone:
        return
    check_sender_number(organization_id, phone)
    try:
        with transaction.atomic():
            claim, _ = SenderNumber.objects.get_or_create(
                phone=phone, defaults={"organization_id": organization_id}
            )
    except IntegrityError:
        claim = SenderNumber.objects.get(phone=phone)
    if claim.organization_id != organization_id:
        raise NumberTaken(phone, claim.organization_id)


def release_unused(organization_id: int) -> None:
    """Free the organization's claims on numbers none of its practices nor its default use."""
    in_use = set(
        Practice.objects.filter(organization_id=organization_id)
        .exclude(sender_number="")
        .values_list("sender_number", flat=True)
    )
    in_use.update(
        Organization.objects.filter(pk=organization_id)
        .exclude(default_sender_number="")
        .values_list("default_sender_number", flat=True)
    )
    SenderNumber.objects.filter(organization_id=organization_id).exclude(phone__in=in_use).delete()
