"""Location: a practice, with its time zone, texting number and front-desk phone."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from careline.clinics.models import Practice
from careline.clinics.numbers import NumberTaken, claim_sender_number, release_unused
from careline.clinics.validators import normalize_phone, validate_time_zone
from careline.integrations.fhir.errors import FhirError
from careline.integrations.fhir.resources.handler import (
    LAST_UPDATED,
    LOGICAL_ID,
    Context,
    EditableModelHandler,
    SearchParameter,
    check_fields,
    phone,
    refuse_duplicate,
)
from careline.integrations.fhir.search import parse_token

TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"


class LocationHandler(EditableModelHandler):
    resource_type = "Location"
    model = Practice
    documentation = (
        "A Location is a practice. Its time zone is the extension "
        f"{TIMEZONE_EXTENSION} (valueCode, an IANA zone; kept as is when absent). "
        "telecom system=sms is the practice's texting number (read back as the organization's "
        "default sender when the practice has none); the first telecom system=phone that is a "
        "real phone number is the front desk (internal extensions are not stored). "
        "identifier[0].value is the practice code feeds use."
    )
    search_parameters = {
        "_id": LOGICAL_ID,
        "_lastUpdated": LAST_UPDATED,
        "identifier": SearchParameter("token", "Practice code."),
        "name": SearchParameter("string", "Name, contains (case-insensitive)."),
    }

    def queryset(self, ctx: Context) -> QuerySet:
        return Practice.objects.filter(organization=ctx.organization).select_related("organization")

    def filter_identifier(self, ctx, value, params) -> Q:
        token = parse_token(value)
        return Q(code=token.code) if token.code else ~Q(code="")

    def filter_name(self, ctx, value, params) -> Q:
        return Q(name__icontains=value)

    def render(self, ctx: Context, practice: Practice) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Location",
            "id": str(practice.pk),
            "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": practice.time_zone}],
            "identifier": [{"value": practice.code}],
            "status": "active",
            "name": practice.name,
            "mode": "instance",
        }
        telecom = []
        if practice.phone:
            telecom.append({"system": "phone", "value": practice.phone, "use": "work"})
        if practice.texting_number:
            telecom.append({"system": "sms", "value": practice.texting_number, "use": "work"})
        if telecom:
            resource["telecom"] = telecom
        if practice.address:
            resource["address"] = {"text": practice.address}
        return resource

    def save(self, ctx: Context, practice: Practice, resource) -> Practice:
        practice.name = resource.name or ""
        codes = [i.value for i in resource.identifier or [] if i.value]
        if codes:
            practice.code = codes[0]
        elif not practice.code:
            practice.code = f"LOC-{timezone.now():%y%m%d%H%M%S%f}"
        for i, extension in enumerate(resource.extension or []):
            if extension.url == TIMEZONE_EXTENSION:
                path = f"Location.extension[{i}].valueCode"
                zone = extension.valueCode
                try:
                    validate_time_zone(zone)
                except ValidationError as exc:
                    raise FhirError(
                        400, f"{path}: {' '.join(exc.messages)}", expression=[path]
                    ) from exc
                if not zone:
                    raise FhirError(400, f"{path}: a time zone is required.", expression=[path])
                practice.time_zone = zone
        practice.sender_number = ""
        practice.phone = ""
        for i, telecom in enumerate(resource.telecom or []):
            if telecom.system == "sms" and not practice.sender_number:
                practice.sender_number = phone(telecom.value, f"Location.telecom[{i}]")
            elif telecom.system == "phone" and not practice.phone and telecom.value:
                try:
                    practice.phone = normalize_phone(telecom.value)
                except ValidationError:
                    continue
        if practice.sender_number == practice.organization.default_sender_number:
            # Reading back shows the organization's number; sending it back is not an override.
            practice.sender_number = ""
        address = resource.address
        if address is not None:
            parts = [*(address.line or []), address.city, address.state, address.postalCode]
            practice.address = address.text or ", ".join(p for p in parts if p)
        else:
            practice.address = ""
        check_fields(
            practice,
            {
                "name": "Location.name",
                "code": "Location.identifier",
                "time_zone": "Location.extension",
                "address": "Location.address",
            },
        )
        refuse_duplicate(
            Practice.objects.filter(organization=ctx.organization, code=practice.code),
            practice,
            "Location.identifier",
            f"already has identifier '{practice.code}'.",
        )
        try:
            with transaction.atomic():
                claim_sender_number(ctx.organization.pk, practice.sender_number)
                practice.save()
                release_unused(ctx.organization.pk)
        except NumberTaken as exc:
            raise FhirError(
                409,
                f"Location.telecom: {exc.message}",
                code="conflict",
                expression=["Location.telecom"],
            ) from exc
        return practice
