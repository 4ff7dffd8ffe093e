"""Writes the clinic directory: organizations, visit types, providers and staff roles.

Every door that adds to the directory (a feed meeting a new provider or visit type, the
`careline apikey` and `careline createstaff` commands) comes through here, so a new
row gets the same defaults whichever system introduced it. Staff edit the directory in
the Django admin.
"""

from __future__ import annotations

from collections.abc import Iterable

from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
)

# Shown to patients for appointment types a feed introduces; staff can rename it later.
NEUTRAL_PATIENT_FACING_NAME = "Appointment"


def organization_for_slug(slug: str) -> Organization:
    """The organization with this slug, created (named after the slug) on first use."""
    organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": slug})
    return organization


def appointment_type_for_code(
    organization: Organization | int, *, code: str, name: str = "", duration_minutes: int = 20
) -> AppointmentType:
    """The organization's appointment type with this code, created on first sight with a
    neutral patient-facing name (a feed's internal visit name is not for patients)."""
    code = code.strip()[:40] or "visit"
    organization_id = getattr(organization, "pk", organization)
    appointment_type, _ = AppointmentType.objects.get_or_create(
        organization_id=organization_id,
        code=code,
        defaults={
            "name": (name.strip() or code)[:120],
            "patient_facing_name": NEUTRAL_PATIENT_FACING_NAME,
            "duration_minutes": max(1, duration_minutes),
        },
    )
    return appointment_type


def add_provider(
    organization_id: int, *, practices: Iterable[Practice | int] = (), **names: str
) -> Provider:
    """A provider a feed introduced, working at `practices`."""
    provider = Provider.objects.create(organization_id=organization_id, **names)
    provider.practices.add(*practices)
    return provider


def link_providers(pairs: Iterable[tuple[int, int]]) -> None:
    """Record that providers work at practices: (provider id, practice id) pairs."""
    Provider.practices.through.objects.bulk_create(
        [Provider.practices.through(provider_id=p, practice_id=q) for p, q in pairs],
        ignore_conflicts=True,
    )


def set_staff_role(user, organization: Organization, role: str, practices) -> StaffMembership:
    """Give `user` this role in the organization, at these practices (replacing any)."""
    membership, _ = StaffMembership.objects.update_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    membership.practices.set(practices)
    return membership
