"""Writes the clinic directory: organizations, visit types, providers and staff roles.

Every door that adds to the directory (a feed meeting a new provider or visit type, the
`careline organization`, `careline apikey` and `careline createstaff` commands) comes
through here, so a new row gets the same defaults whichever system introduced it. Staff
edit the directory in the Django admin.

Organizations are only ever created on purpose (`add_organization`): a door that is given
an organization slug looks it up with `organization_named`, so a typo is an error naming
the organizations there are, never a new empty organization.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils.text import slugify

from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
)
from careline.clinics.numbers import NumberTaken, claim_sender_number, release_unused
from careline.versions import change_stamp, stamp

# Shown to patients for appointment types a feed introduces; staff can rename it later.
NEUTRAL_PATIENT_FACING_NAME = "Appointment"


# How many organization slugs an error message lists before pointing at the full list.
KNOWN_SLUGS_SHOWN = 20


class UnknownOrganization(ValueError):
    """No organization has the slug; the message names the known ones."""


def known_organizations_hint(slug: str) -> str:
    """'Known organizations: a, b.' (closest matches first), or how to add the first one."""
    slugs = list(Organization.objects.order_by("slug").values_list("slug", flat=True))
    if not slugs:
        return "There are no organizations yet; add one with `careline organization add SLUG`."
    close = difflib.get_close_matches(slug, slugs, n=3, cutoff=0.6)
    shown = close + [s for s in slugs if s not in close]
    listed = ", ".join(shown[:KNOWN_SLUGS_SHOWN])
    if len(shown) > KNOWN_SLUGS_SHOWN:
        listed += f" and {len(shown) - KNOWN_SLUGS_SHOWN} more (`careline organization list`)"
    hint = f"Known organizations: {listed}."
    if close:
        hint = f"Did you mean '{close[0]}'? " + hint
    return hint


def organization_named(slug: str) -> Organization:
    """The organization with this slug; UnknownOrganization naming the known ones if none."""
    organization = Organization.objects.filter(slug=slug.strip()).first()
    if organization is None:
        raise UnknownOrganization(
            f"No organization has the slug '{slug}'. {known_organizations_hint(slug.strip())}"
        )
    return organization


def add_organization(slug: str, *, name: str) -> Organization:
    """A new organization; ValueError saying what is wrong with the slug or name."""
    slug = slug.strip()
    if not slug or slugify(slug) != slug:
        raise ValueError(
            f"'{slug}' is not a valid organization slug "
            "(lowercase letters, digits and hyphens, e.g. 'valley-health')."
        )
    if Organization.objects.filter(slug=slug).exists():
        raise ValueError(f"An organization with the slug '{slug}' already exists.")
    organization = Organization(slug=slug, name=name.strip())
    try:
        organization.full_clean()
    except ValidationError as exc:
        problems = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
        )
        raise ValueError(f"The organization is not valid: {problems}") from exc
    organization.save()
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


def save_provider(provider: Provider) -> Provider:
    """Save a new or changed provider as its next version (FHIR's versionId/lastUpdated);
    what the FHIR Practitioner door and the Django admin call."""
    with transaction.atomic():
        stamp(provider)
        provider.save(force_insert=provider.pk is None)
    return provider


def add_provider(
    organization_id: int, *, practices: Iterable[Practice | int] = (), **names: str
) -> Provider:
    """A provider a feed introduced, working at `practices`."""
    with transaction.atomic():
        provider = save_provider(Provider(organization_id=organization_id, **names))
        provider.practices.add(*practices)
    return provider


def link_providers(pairs: Iterable[tuple[int, int]]) -> None:
    """Record that providers work at practices: (provider id, practice id) pairs. A provider
    who gains a practice gets its next version: its Schedule there is new to a change feed."""
    through = Provider.practices.through
    wanted = set(pairs)
    if not wanted:
        return
    # No savepoint of its own (called per message and per group): a failure fails the
    # caller's.
    with transaction.atomic(savepoint=False):
        providers = {p for p, _ in wanted}
        known = set(
            through.objects.filter(provider_id__in=providers).values_list(
                "provider_id", "practice_id"
            )
        )
        new = wanted - known
        if not new:
            return
        through.objects.bulk_create(
            [through(provider_id=p, practice_id=q) for p, q in sorted(new)],
            ignore_conflicts=True,
        )
        changed = sorted({p for p, _ in new})
        by_organization: dict[int, list[int]] = {}
        for provider_id, organization_id in (
            Provider.objects.select_for_update()
            .filter(pk__in=changed)
            .order_by("pk")
            .values_list("pk", "organization_id")
        ):
            by_organization.setdefault(organization_id, []).append(provider_id)
        for organization_id, ids in by_organization.items():
            # One change time per organization, one UPDATE: a CSV import links in bulk.
            at = change_stamp(Provider, organization_id)
            Provider.objects.filter(pk__in=ids).update(version=F("version") + 1, last_updated=at)


def set_staff_role(user, organization: Organization, role: str, practices) -> StaffMembership:
    """Give `user` this role in the organization, at these practices (replacing any)."""
    membership, _ = StaffMembership.objects.update_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    membership.practices.set(practices)
    return membership


PRACTICE_FIELDS = ("name", "time_zone", "sender_number", "phone", "address")


def put_practice(
    organization: Organization, code: str, **values: str | None
) -> tuple[Practice, str]:
    """The practice with this code, added or brought to the values given (None: leave as
    is), for scripts that run twice: returns it and "added", "updated" or "unchanged".
    ValidationError by field (a number another organization texts from included); nothing
    is saved then."""
    code = code.strip()
    unknown = set(values) - set(PRACTICE_FIELDS)
    if unknown:
        raise ValueError(f"Not a practice field: {', '.join(sorted(unknown))}")
    practice = Practice.objects.filter(organization=organization, code=code).first()
    added = practice is None
    if added:
        practice = Practice(organization=organization, code=code)
    before = {f: getattr(practice, f) for f in PRACTICE_FIELDS}
    for field, value in values.items():
        if value is not None:
            setattr(practice, field, value.strip())
    if added and not practice.name:
        raise ValidationError({"name": ["A new practice needs a name."]})
    practice.full_clean(exclude=["organization", "go_live_date"])
    changed = [f for f in PRACTICE_FIELDS if getattr(practice, f) != before[f]]
    if not added and not changed:
        return practice, "unchanged"
    try:
        with transaction.atomic():
            claim_sender_number(organization.pk, practice.sender_number)
            practice.save()
            release_unused(organization.pk)
    except NumberTaken as exc:
        raise ValidationError({"sender_number": [exc.message]}) from exc
    return practice, "added" if added else "updated"


def put_provider(
    organization: Organization,
    *,
    display_name: str,
    npi: str = "",
    practices: Iterable[Practice] = (),
) -> tuple[Provider, str]:
    """The provider with this NPI (or, without one, this display name), added or updated,
    working at `practices` too: returns it and "added", "updated" or "unchanged"."""
    display_name, npi = display_name.strip(), npi.strip()
    if not display_name:
        raise ValidationError({"display_name": ["A provider needs a name patients see."]})
    if npi and not (len(npi) == 10 and npi.isascii() and npi.isdigit()):
        raise ValidationError({"npi": [f"'{npi}' is not a 10-digit NPI."]})
    found = Provider.objects.filter(organization=organization)
    provider = (found.filter(npi=npi) if npi else found.filter(display_name=display_name)).first()
    outcome = "unchanged"
    if provider is None:
        provider = save_provider(
            Provider(organization=organization, display_name=display_name, npi=npi)
        )
        outcome = "added"
    elif provider.display_name != display_name:
        provider.display_name = display_name
        save_provider(provider)
        outcome = "updated"
    known = set(provider.practices.values_list("id", flat=True))
    new = [p for p in practices if p.pk not in known]
    if new:
        link_providers((provider.pk, p.pk) for p in new)
        outcome = "added" if outcome == "added" else "updated"
    return provider, outcome
