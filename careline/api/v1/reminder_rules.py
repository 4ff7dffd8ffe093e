"""The few rules the API adds around the domain services: an organization's default
reminder cadence as one resource, and audiences that stay inside the key's organization."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from careline.broadcasts.sending import Audience
from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.messaging.models import DEFAULT_OFFSETS_MINUTES, ReminderRule


def default_rule(organization: Organization) -> ReminderRule:
    """The organization-wide rule; unsaved with Careline's built-in cadence if there is none
    (the planner uses that cadence for organizations without a rule)."""
    return ReminderRule.objects.filter(
        organization=organization, practice__isnull=True, appointment_type__isnull=True
    ).order_by("id").first() or ReminderRule(
        organization=organization, offsets_minutes=list(DEFAULT_OFFSETS_MINUTES)
    )


def override_rules(organization: Organization) -> list[ReminderRule]:
    """Rules for a practice and/or appointment type, which win over the default."""
    return list(
        ReminderRule.objects.filter(organization=organization)
        .exclude(practice__isnull=True, appointment_type__isnull=True)
        .order_by("practice_id", "appointment_type_id", "id")
    )


def save_default_rule(organization: Organization, **fields: Any) -> ReminderRule:
    """Replace the organization-wide rule with `fields`; ValidationError if they are not
    valid (ReminderRule.full_clean)."""
    with transaction.atomic():
        # Two concurrent first saves would otherwise both create an organization-wide rule.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        rule = default_rule(organization)
        for name, value in fields.items():
            setattr(rule, name, value)
        rule.full_clean()
        rule.save()
    return rule


def foreign_ids(organization: Organization, audience: Audience) -> dict[str, list[int]]:
    """Audience ids that are not the organization's, by audience field."""
    checks = {
        "practice_ids": (Practice, audience.practice_ids),
        "provider_ids": (Provider, audience.provider_ids),
        "appointment_type_ids": (AppointmentType, audience.appointment_type_ids),
    }
    problems = {}
    for field, (model, ids) in checks.items():
        if not ids:
            continue
        known = set(
            model.objects.filter(organization=organization, id__in=ids).values_list("id", flat=True)
        )
        missing = [i for i in ids if i not in known]
        if missing:
            problems[field] = missing
    return problems
