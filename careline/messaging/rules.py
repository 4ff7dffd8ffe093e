"""An organization's default reminder rule: the organization-wide cadence that practice and
appointment-type rules override. The cadence settings page and PUT /api/v1/reminder-rules
both read and save it here, so the two give the same rule for the same cadence. A
practice's own rule, which its managers set on the settings pages, is saved here too.

Every change to a rule (these pages, the REST API, the Django admin) goes through
save_rule / delete_rule, which re-plan the not-yet-sent reminders of the upcoming visits
the rule applied to and applies to (careline.messaging.planning.replan_for_rule)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from careline.clinics.models import Organization, Practice
from careline.messaging.models import DEFAULT_OFFSETS_MINUTES, ReminderRule
from careline.messaging.planning import RuleScope, replan_for_rule


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


def practice_rule(practice: Practice) -> ReminderRule:
    """The practice's own rule (for every appointment type); unsaved, starting from the
    organization's cadence, if it has none."""
    rule = (
        ReminderRule.objects.filter(
            organization_id=practice.organization_id,
            practice=practice,
            appointment_type__isnull=True,
        )
        .order_by("id")
        .first()
    )
    if rule is not None:
        return rule
    default = default_rule(practice.organization)
    return ReminderRule(
        organization_id=practice.organization_id,
        practice=practice,
        offsets_minutes=list(default.offsets_minutes),
        stop_when_confirmed=default.stop_when_confirmed,
        send_event_messages=default.send_event_messages,
    )


def save_default_rule(organization: Organization, **fields: Any) -> ReminderRule:
    """Set `fields` on the organization-wide rule (creating it) and switch it on, unless
    `active` is given; ValidationError if they are not valid (ReminderRule.full_clean).

    Saving a cadence means "use this cadence", so a rule switched off in the admin comes
    back on. The offsets are stored longest lead first, however they were written."""
    with transaction.atomic():
        # Two concurrent first saves would otherwise both create an organization-wide rule.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        return _save(default_rule(organization), fields)


def save_practice_rule(practice: Practice, **fields: Any) -> ReminderRule:
    """Like save_default_rule, for the practice's own rule (what its managers change)."""
    with transaction.atomic():
        Practice.objects.select_for_update().filter(pk=practice.pk).first()
        return _save(practice_rule(practice), fields)


def _save(rule: ReminderRule, fields: dict[str, Any]) -> ReminderRule:
    for name, value in {"active": True, **fields}.items():
        setattr(rule, name, value)
    return save_rule(rule)


def _stored(rule: ReminderRule) -> RuleScope | None:
    """The rule as stored; for a new rule, its scope with the cadence its visits had (the
    organization's rule or Careline's), so their planned reminders move in place."""
    stored = ReminderRule.objects.filter(pk=rule.pk).first() if rule.pk else None
    if stored is not None:
        return RuleScope.of(stored, stored=True)
    fallback = (
        default_rule(rule.organization) if rule.practice_id or rule.appointment_type_id else None
    )
    offsets = fallback.offsets_minutes if fallback and fallback.active else DEFAULT_OFFSETS_MINUTES
    return RuleScope(
        rule.organization_id, rule.practice_id, rule.appointment_type_id, tuple(offsets)
    )


def save_rule(rule: ReminderRule) -> ReminderRule:
    """Validate and save `rule` (ValidationError naming the field), then re-plan the
    upcoming visits it applied to before and applies to now, in the same transaction."""
    with transaction.atomic():
        before = _stored(rule)
        rule.full_clean()
        rule.offsets_minutes = sorted(rule.offsets_minutes, reverse=True)
        rule.save()
        replan_for_rule(rule, before=before)
    return rule


def delete_rule(rule: ReminderRule) -> None:
    """Delete `rule`; its visits fall back to the next rule (or Careline's default) and
    are re-planned at once."""
    with transaction.atomic():
        before = _stored(rule)
        rule.delete()
        rule.active = False
        replan_for_rule(rule, before=before)
