"""Schedule: a practitioner's calendar at one location; read-only, it follows the links
appointments make between practitioners and locations.

A Schedule shows its practitioner and its location, so it changes when either does (and
appears when the practitioner starts working there, which is the practitioner's next
version): its meta.lastUpdated is the later of the two, its versionId their sum (each
change of either adds one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, Q, QuerySet
from django.db.models.functions import Greatest

from careline.clinics.models import Practice, Provider
from careline.integrations.fhir.errors import FhirError, not_found
from careline.integrations.fhir.resources.handler import (
    LAST_UPDATED,
    LOGICAL_ID,
    Context,
    Handler,
    SearchParameter,
    filter_last_updated,
    settled_horizon,
)
from careline.integrations.fhir.search import any_of, parse_pk, reference_pk, search_parameter


@dataclass(frozen=True)
class ScheduleRow:
    provider: Provider
    practice: Practice
    # The link's own id: the change feed's tie-breaker (its cursor), never shown.
    pk: int = 0

    @property
    def id(self) -> str:
        return f"{self.provider.pk}-{self.practice.pk}"

    @property
    def version(self) -> int:
        return self.provider.version + self.practice.version

    @property
    def last_updated(self) -> datetime:
        return max(self.provider.last_updated, self.practice.last_updated)


def _row(link: Any) -> ScheduleRow:
    return ScheduleRow(link.provider, link.practice, link.pk)


class ScheduleHandler(Handler):
    resource_type = "Schedule"
    writable = False
    documentation = (
        "A practitioner's calendar at one location (id '<practitioner id>-<location id>'). "
        "Read-only: it appears when an Appointment puts the practitioner at the location."
    )
    search_parameters = {
        "_id": LOGICAL_ID,
        "_lastUpdated": LAST_UPDATED,
        "actor": SearchParameter("reference", "Practitioner/<id> or Location/<id>."),
    }

    def _links(self, ctx: Context) -> QuerySet:
        return (
            Provider.practices.through.objects.filter(provider__organization=ctx.organization)
            .select_related("provider", "practice")
            .annotate(
                last_updated=Greatest(F("provider__last_updated"), F("practice__last_updated"))
            )
            .order_by("provider_id", "practice_id")
        )

    def get(self, ctx: Context, resource_id: str) -> ScheduleRow:
        provider_id, _, practice_id = resource_id.partition("-")
        provider_pk, practice_pk = parse_pk(provider_id), parse_pk(practice_id)
        link = (
            self._links(ctx).filter(provider_id=provider_pk, practice_id=practice_pk).first()
            if provider_pk and practice_pk
            else None
        )
        if link is None:
            raise not_found("Schedule", resource_id)
        return _row(link)

    def search(
        self,
        ctx: Context,
        params: dict[str, list[str]],
        offset: int,
        count: int,
        *,
        changed_after: tuple[datetime, int] | None = None,
    ) -> tuple[int, list[Any]]:
        """`changed_after` (last_updated, link id) sorts by change and pages from that key."""
        links = self._links(ctx)
        for name, values in params.items():
            for value in values:
                if name == "_id":
                    q = Q(pk__in=[])
                    for one in value.split(","):
                        provider_id, _, practice_id = one.partition("-")
                        q |= Q(provider_id=parse_pk(provider_id), practice_id=parse_pk(practice_id))
                    links = links.filter(q)
                elif name == "_lastUpdated":
                    with search_parameter(name):
                        links = links.filter(
                            any_of(value, lambda v: filter_last_updated(v.strip()))
                        )
                else:
                    with search_parameter(name):
                        links = links.filter(any_of(value, _actor_q))
        if changed_after is not None or "_lastUpdated" in params:
            horizon = settled_horizon(ctx, Provider, Practice)
            if horizon is not None:
                links = links.filter(last_updated__lt=horizon)
        total = links.count()
        if changed_after is None:
            return total, [_row(link) for link in links[offset : offset + count]] if count else []
        at, pk = changed_after
        links = links.order_by("last_updated", "id").filter(
            Q(last_updated__gt=at) | Q(last_updated=at, id__gt=pk)
        )
        return total, [_row(link) for link in links[:count]] if count else []

    def render(self, ctx: Context, row: ScheduleRow) -> dict[str, Any]:
        return {
            "resourceType": "Schedule",
            "id": row.id,
            "active": row.provider.active,
            "actor": [
                {
                    "reference": f"Practitioner/{row.provider.pk}",
                    "display": row.provider.display_name,
                },
                {"reference": f"Location/{row.practice.pk}", "display": row.practice.name},
            ],
        }


def _actor_q(value: str) -> Q:
    provider_pk = reference_pk(value, "Practitioner")
    if provider_pk:
        return Q(provider_id=provider_pk)
    practice_pk = reference_pk(value, "Location")
    if practice_pk:
        return Q(practice_id=practice_pk)
    raise FhirError(400, f"actor must be Practitioner/<id> or Location/<id>, got '{value}'.")
