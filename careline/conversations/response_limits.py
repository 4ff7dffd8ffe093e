"""How long a patient's text may wait in each inbox queue before its clock turns red: the
one writer of `QueueResponseLimit`, and the limits the inbox reads.

An organization sets a limit per queue for all its practices; a practice may set its own
for a queue, which wins (a pediatric practice answers clinical questions faster than the
billing office). A queue with neither keeps Careline's default below, so existing
installations behave as before. The settings pages and the REST API both come here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from careline.clinics.models import Organization, Practice
from careline.conversations.models import MAX_RESPONSE_MINUTES, Queue, QueueResponseLimit

# Careline's defaults: clinical questions can't wait an hour.
DEFAULT_MINUTES: dict[str, int] = {
    Queue.SCHEDULING: 30,
    Queue.BILLING: 4 * 60,
    Queue.REFILLS: 2 * 60,
    Queue.CLINICAL: 15,
    Queue.RECORDS: 60,
    Queue.GENERAL: 60,
}
FALLBACK_MINUTES = 60


def default_minutes(queue: str) -> int:
    return DEFAULT_MINUTES.get(queue, FALLBACK_MINUTES)


@dataclass(frozen=True)
class Limits:
    """The limits of some organizations and their practices, loaded in one query."""

    organization: Mapping[tuple[int, str], int]
    practice: Mapping[tuple[int, str], int]

    def minutes(self, organization_id: int, practice_id: int | None, queue: str) -> int:
        if practice_id is not None and (practice_id, queue) in self.practice:
            return self.practice[(practice_id, queue)]
        return self.organization.get((organization_id, queue), default_minutes(queue))

    def limit(self, organization_id: int, practice_id: int | None, queue: str) -> timedelta:
        return timedelta(minutes=self.minutes(organization_id, practice_id, queue))


def load(organization_ids: Iterable[int]) -> Limits:
    rows = QueueResponseLimit.objects.filter(organization_id__in=set(organization_ids))
    organization: dict[tuple[int, str], int] = {}
    practice: dict[tuple[int, str], int] = {}
    for org_id, practice_id, queue, minutes in rows.values_list(
        "organization_id", "practice_id", "queue", "minutes"
    ):
        if practice_id is None:
            organization[(org_id, queue)] = minutes
        else:
            practice[(practice_id, queue)] = minutes
    return Limits(organization, practice)


@dataclass(frozen=True)
class QueueLimit:
    """One queue's limit as a settings page or the API shows it."""

    queue: str
    label: str
    minutes: int  # the limit in force
    own: int | None  # set at this level (organization or practice); None: inherited
    inherited: int  # what applies without `own`: the organization's, else the default


def limits_of(organization: Organization, practice: Practice | None = None) -> list[QueueLimit]:
    """Every queue's limit for the organization (practice None) or one of its practices."""
    limits = load([organization.pk])
    result = []
    for queue, label in Queue.choices:
        if practice is None:
            own = limits.organization.get((organization.pk, queue))
            inherited = default_minutes(queue)
        else:
            own = limits.practice.get((practice.pk, queue))
            inherited = limits.minutes(organization.pk, None, queue)
        result.append(
            QueueLimit(queue, label, own if own is not None else inherited, own, inherited)
        )
    return result


def parse_minutes(value: object, queue: str) -> int | None:
    """A limit typed into a door: whole minutes 1..a week, or blank/None to inherit.
    Raises ValidationError naming the queue."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValidationError({queue: ["Give the limit in whole minutes."]})
    if isinstance(value, str):
        text = value.strip()
        # int() would read "٣" and "1_0"; only the digits a keyboard types.
        if not (text.isascii() and text.isdigit()):
            raise ValidationError({queue: ["Give the limit in whole minutes, e.g. 30."]})
        value = int(text)
    if not isinstance(value, int):
        raise ValidationError({queue: ["Give the limit in whole minutes, e.g. 30."]})
    if not 1 <= value <= MAX_RESPONSE_MINUTES:
        raise ValidationError(
            {queue: [f"A limit is between 1 and {MAX_RESPONSE_MINUTES} minutes (a week)."]}
        )
    return value


def save_limits(
    organization: Organization,
    practice: Practice | None,
    minutes: Mapping[str, object],
) -> list[QueueLimit]:
    """Set the organization's (practice None) or a practice's limits: `minutes` maps queue
    names to whole minutes, or to None/blank to inherit again. Queues not named keep their
    limit. Raises ValidationError naming each bad queue; nothing is stored then."""
    if practice is not None and practice.organization_id != organization.pk:
        raise ValidationError({"practice": ["The practice is not in this organization."]})
    errors: dict[str, list[str]] = {}
    values: dict[str, int | None] = {}
    for queue, value in minutes.items():
        if queue not in Queue.values:
            errors[queue] = [f"No such queue; the queues are {', '.join(Queue.values)}."]
            continue
        try:
            values[queue] = parse_minutes(value, queue)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    level = Q(organization=organization) & (
        Q(practice__isnull=True) if practice is None else Q(practice=practice)
    )
    with transaction.atomic():
        for queue, value in values.items():
            if value is None:
                QueueResponseLimit.objects.filter(level, queue=queue).delete()
            else:
                QueueResponseLimit.objects.update_or_create(
                    organization=organization,
                    practice=practice,
                    queue=queue,
                    defaults={"minutes": value},
                )
    return limits_of(organization, practice)
