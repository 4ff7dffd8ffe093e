"""Practitioner: a provider, known to feeds by NPI and to patients by a display name."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q

from careline.clinics.directory import save_provider
from careline.clinics.models import Provider
from careline.integrations.fhir.errors import FhirError
from careline.integrations.fhir.resources.handler import (
    LAST_UPDATED,
    LOGICAL_ID,
    Context,
    EditableModelHandler,
    PersonNameFilters,
    SearchParameter,
    check_fields,
    pick_name,
)
from careline.integrations.fhir.search import parse_token

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


class PractitionerHandler(PersonNameFilters, EditableModelHandler):
    resource_type = "Practitioner"
    model = Provider
    documentation = (
        "The NPI is the identifier with system http://hl7.org/fhir/sid/us-npi. The name "
        "patients see is name.text, else prefix and family ('Dr Lee'), else given and family."
    )
    search_parameters = {
        "_id": LOGICAL_ID,
        "_lastUpdated": LAST_UPDATED,
        "identifier": SearchParameter("token", "NPI."),
        "name": SearchParameter("string", "Any part of the name, contains (case-insensitive)."),
        "family": SearchParameter("string", "Family name, starts with."),
        "given": SearchParameter("string", "Given name, starts with."),
        "active": SearchParameter("token", "true or false."),
    }

    def filter_identifier(self, ctx, value, params) -> Q:
        token = parse_token(value)
        if token.system not in (None, "", NPI_SYSTEM):
            return Q(pk__in=[])
        return Q(npi=token.code) if token.code else ~Q(npi="")

    def filter_name(self, ctx, value, params) -> Q:
        return (
            Q(display_name__icontains=value)
            | Q(family_name__icontains=value)
            | Q(given_name__icontains=value)
        )

    def filter_active(self, ctx, value, params) -> Q:
        if value not in ("true", "false"):
            raise FhirError(400, f"active must be true or false, got '{value}'.")
        return Q(active=value == "true")

    def render(self, ctx: Context, provider: Provider) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": "Practitioner", "id": str(provider.pk)}
        if provider.npi:
            resource["identifier"] = [{"system": NPI_SYSTEM, "value": provider.npi}]
        resource["active"] = provider.active
        name: dict[str, Any] = {"text": provider.display_name}
        if provider.family_name:
            name["family"] = provider.family_name
        if provider.given_name.split():
            name["given"] = provider.given_name.split()
        resource["name"] = [name]
        return resource

    def save(self, ctx: Context, provider: Provider, resource) -> Provider:
        name = pick_name(resource.name)
        if name is None:
            raise FhirError(422, "Practitioner.name is required.", expression=["Practitioner.name"])
        provider.family_name = name.family or ""
        provider.given_name = " ".join(part for part in name.given or [] if part)
        prefix = " ".join(part for part in name.prefix or [] if part)
        provider.display_name = (
            name.text
            or (f"{prefix} {provider.family_name}" if prefix and provider.family_name else "")
            or f"{provider.given_name} {provider.family_name}"
        ).strip()
        npis = [i.value for i in resource.identifier or [] if i.system == NPI_SYSTEM and i.value]
        provider.npi = npis[0] if npis else ""
        if provider.npi and not re.fullmatch(r"\d{10}", provider.npi):
            raise FhirError(
                422,
                f"Practitioner.identifier: the NPI '{provider.npi}' must be 10 digits.",
                code="value",
                expression=["Practitioner.identifier"],
            )
        provider.active = resource.active is not False
        check_fields(
            provider,
            {
                "display_name": "Practitioner.name",
                "family_name": "Practitioner.name.family",
                "given_name": "Practitioner.name.given",
            },
        )
        return save_provider(provider)
