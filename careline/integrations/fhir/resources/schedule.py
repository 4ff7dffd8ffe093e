"""Schedule: a practitioner's calendar at one location; read-only, it follows the links
appointments make between practitioners and locations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from careline.clinics.models import Practice, Provider
from careline.integrations.fhir.errors import FhirError, not_found
from careline.integrations.fhir.resources.handler import (
    LOGICAL_ID,
    Context,
    Handler,
    SearchParameter,
)
from careline.integrations.fhir.search import any_of, parse_pk, reference_pk, search_parameter


@dataclass(frozen=True)
class ScheduleRow:
    provider: Provider
    practice: Practice

    @property
    def id(self) -> str:
        return f"{self.provider.pk}-{self.practice.pk}"


class ScheduleHandler(Handler):
    resource_type = "Schedule"
    writable = False
    documentation = (
        "A practitioner's calendar at one location (id '<practitioner id>-<location id>'). "
        "Read-only: it appears when an Appointment puts the practitioner at the location."
    )
    search_parameters = {
        "_id": LOGICAL_ID,
        "actor": SearchParameter("reference", "Practitioner/<id> or Location/<id>."),
    }

    def _links(self, ctx: Context) -> QuerySet:
        return (
            Provider.practices.through.objects.filter(provider__organization=ctx.organization)
            .select_related("provider", "practice")
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
        return ScheduleRow(link.provider, link.practice)

    def search(self, ctx, params, offset, count) -> tuple[int, list[Any]]:
        links = self._links(ctx)
        for name, values in params.items():
            for value in values:
                if name == "_id":
                    q = Q(pk__in=[])
                    for one in value.split(","):
                        provider_id, _, practice_id = one.partition("-")
                        q |= Q(provider_id=parse_pk(provider_id), practice_id=parse_pk(practice_id))
                    links = links.filter(q)
                else:
                    with search_parameter(name):
                        links = links.filter(any_of(value, _actor_q))
        total = links.count()
        rows = [
            ScheduleRow(link.provider, link.practice) for link in links[offset : offset + count]
        ]
        return total, rows if count else []

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
