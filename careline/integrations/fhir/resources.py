"""How Careline's records read and write as FHIR R4 resources, one handler per resource type.

Handlers receive resources already validated by `fhir.resources` (R4B models, wire-compatible
with R4 for these types) and turn them into Careline rows, or rows into plain JSON dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.clinics.validators import normalize_phone, validate_time_zone
from careline.integrations.fhir.errors import FhirError, not_found, unknown_reference
from careline.integrations.fhir.search import (
    any_of,
    date_q,
    date_range,
    parse_pk,
    parse_token,
    reference_pk,
)
from careline.patients.models import Language, Patient
from careline.scheduling.appointments import find_open_slots
from careline.scheduling.external import resolve_appointment_type, upsert_external_appointment
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# Set on a Patient's sms telecom while the number is opted out of texts (when it opted out).
SMS_OPT_OUT_EXTENSION = "https://careline.dev/fhir/StructureDefinition/sms-opt-out"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
BCP47 = "urn:ietf:bcp:47"
CANCELLATION_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
PATIENT_SOURCES = (ChangeSource.PATIENT_TEXT, ChangeSource.PATIENT_LINK)


@dataclass(frozen=True)
class Context:
    organization: Organization
    base_url: str  # absolute, ending in "/"


@dataclass(frozen=True)
class SearchParameter:
    type: str
    documentation: str


class Handler:
    """One FHIR resource type: read, search and, where supported, create and update."""

    resource_type: ClassVar[str]
    writable: ClassVar[bool] = True
    documentation: ClassVar[str] = ""
    search_parameters: ClassVar[dict[str, SearchParameter]] = {}

    def get(self, ctx: Context, resource_id: str) -> Any:
        raise NotImplementedError

    def search(
        self, ctx: Context, params: dict[str, list[str]], offset: int, count: int
    ) -> tuple[int, list[Any]]:
        raise NotImplementedError

    def render(self, ctx: Context, obj: Any) -> dict[str, Any]:
        raise NotImplementedError

    def create(self, ctx: Context, resource: Any) -> Any:
        raise FhirError(405, f"{self.resource_type} is read-only here.", code="not-supported")

    def update(self, ctx: Context, obj: Any, resource: Any) -> Any:
        raise FhirError(405, f"{self.resource_type} is read-only here.", code="not-supported")


class ModelHandler(Handler):
    """A resource type stored as one Django model, searched with querysets."""

    ordering: ClassVar[tuple[str, ...]] = ("id",)

    def queryset(self, ctx: Context) -> QuerySet:
        raise NotImplementedError

    def get(self, ctx: Context, resource_id: str) -> models.Model:
        pk = parse_pk(resource_id)
        obj = self.queryset(ctx).filter(pk=pk).first() if pk else None
        if obj is None:
            raise not_found(self.resource_type, resource_id)
        return obj

    def search(
        self, ctx: Context, params: dict[str, list[str]], offset: int, count: int
    ) -> tuple[int, list[Any]]:
        qs = self.queryset(ctx)
        for name, values in params.items():
            for value in values:
                qs = qs.filter(self.filter(ctx, name, value, params))
        qs = qs.order_by(*self.ordering)
        total = qs.count()
        return total, list(qs[offset : offset + count]) if count else []

    def filter(self, ctx: Context, name: str, value: str, params: dict[str, list[str]]) -> Q:
        build = getattr(self, f"filter_{name.lstrip('_').replace('-', '_')}")
        return any_of(value, lambda v: build(ctx, v.strip(), params))

    def filter_id(self, ctx: Context, value: str, params) -> Q:
        return Q(pk=parse_pk(value)) if parse_pk(value) else Q(pk__in=[])


def _check_fields(obj: models.Model, paths: dict[str, str]) -> None:
    """Django's own field validation (lengths, e-mail, time zone), reported as FHIR paths."""
    exclude = [f.name for f in obj._meta.fields if f.name not in paths]
    try:
        obj.clean_fields(exclude=exclude)
    except ValidationError as exc:
        problems = [f"{paths[field]}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
        raise FhirError(
            422, "; ".join(problems), code="value", expression=[paths[f] for f in exc.message_dict]
        ) from exc


def _phone(value: str | None, path: str, region: str | None = None) -> str:
    try:
        return normalize_phone(value or "", region)
    except ValidationError as exc:
        raise FhirError(400, f"{path}: {' '.join(exc.messages)}", expression=[path]) from exc


def _pick_name(names: list | None):
    names = names or []
    for use in ("official", "usual", None):
        for name in names:
            if use is None or name.use == use:
                return name
    return None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _resolve(reference: str, resource_type: str, path: str, qs: QuerySet) -> models.Model:
    pk = reference_pk(reference, resource_type)
    obj = qs.filter(pk=pk).first() if pk else None
    if obj is None:
        raise unknown_reference(reference, path)
    return obj


# --- Patient -----------------------------------------------------------------------------


class PatientHandler(ModelHandler):
    resource_type = "Patient"
    documentation = (
        "The MRN is the identifier typed MR (v2-0203), or the only identifier. The mobile "
        "number is telecom system=sms, or system=phone with use=mobile; it must be a real "
        "number (digits without a country code are read in the patient's address country, "
        "else the server's default region). communication.language picks English or Spanish "
        "texts; other languages get English."
    )
    search_parameters = {
        "_id": SearchParameter("token", "Logical id."),
        "identifier": SearchParameter("token", "MRN; only the value is compared."),
        "telecom": SearchParameter("token", "Mobile number in any format, or e-mail."),
        "phone": SearchParameter("token", "Mobile number in any format."),
        "email": SearchParameter("token", "E-mail address."),
        "family": SearchParameter("string", "Family name, starts with (case-insensitive)."),
        "given": SearchParameter("string", "Given name, starts with (case-insensitive)."),
        "name": SearchParameter("string", "Family or given name, starts with."),
        "birthdate": SearchParameter("date", "Birth date, with FHIR date prefixes."),
    }

    def queryset(self, ctx: Context) -> QuerySet:
        return Patient.objects.filter(organization=ctx.organization)

    def filter_identifier(self, ctx, value, params) -> Q:
        token = parse_token(value)
        return Q(mrn=token.code) if token.code else ~Q(mrn="")

    def filter_telecom(self, ctx, value, params) -> Q:
        token = parse_token(value)
        if token.system == "email" or "@" in (token.code or ""):
            return self.filter_email(ctx, token.code or "", params)
        return Q(mobile_phone=_phone(token.code, "telecom search value"))

    def filter_phone(self, ctx, value, params) -> Q:
        return Q(mobile_phone=_phone(parse_token(value).code, "phone search value"))

    def filter_email(self, ctx, value, params) -> Q:
        return Q(email__iexact=parse_token(value).code or "")

    def filter_family(self, ctx, value, params) -> Q:
        return Q(family_name__istartswith=value)

    def filter_given(self, ctx, value, params) -> Q:
        return Q(given_name__istartswith=value)

    def filter_name(self, ctx, value, params) -> Q:
        return Q(family_name__istartswith=value) | Q(given_name__istartswith=value)

    def filter_birthdate(self, ctx, value, params) -> Q:
        return date_q("birth_date", value, UTC, as_date=True)

    def render(self, ctx: Context, patient: Patient) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": "Patient", "id": str(patient.pk)}
        if patient.mrn:
            resource["identifier"] = [
                {
                    "use": "usual",
                    "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                    "value": patient.mrn,
                }
            ]
        resource["active"] = True
        name: dict[str, Any] = {"use": "official", "family": patient.family_name}
        if patient.given_name.split():
            name["given"] = patient.given_name.split()
        resource["name"] = [name]
        telecom = []
        if patient.mobile_phone:
            sms: dict[str, Any] = {"system": "sms", "value": patient.mobile_phone, "use": "mobile"}
            consent = patient.sms_consent
            if consent is not None and consent.opted_out:
                # The number stays the patient's; it just may not be texted.
                sms["extension"] = [
                    {"url": SMS_OPT_OUT_EXTENSION, "valueDateTime": consent.changed_at.isoformat()}
                ]
            telecom.append(sms)
        if patient.email:
            telecom.append({"system": "email", "value": patient.email})
        if telecom:
            resource["telecom"] = telecom
        if patient.birth_date:
            resource["birthDate"] = patient.birth_date.isoformat()
        resource["communication"] = [
            {
                "language": {
                    "coding": [
                        {
                            "system": BCP47,
                            "code": patient.preferred_language,
                            "display": patient.get_preferred_language_display(),
                        }
                    ]
                },
                "preferred": True,
            }
        ]
        return resource

    def create(self, ctx: Context, resource) -> Patient:
        return self._save(ctx, Patient(organization=ctx.organization), resource)

    def update(self, ctx: Context, patient: Patient, resource) -> Patient:
        return self._save(ctx, patient, resource)

    def _save(self, ctx: Context, patient: Patient, resource) -> Patient:
        name = _pick_name(resource.name)
        if name is None:
            raise FhirError(
                422, "Patient.name is required (family and given).", expression=["Patient.name"]
            )
        patient.family_name = name.family or ""
        patient.given_name = " ".join(name.given or [])
        patient.mrn = _mrn(resource.identifier)
        region = next(
            (
                a.country.upper()
                for a in resource.address or []
                if a.country and len(a.country) == 2 and a.country.isalpha()
            ),
            None,
        )
        patient.mobile_phone = _mobile(resource.telecom, region)
        patient.email = next(
            (t.value for t in resource.telecom or [] if t.system == "email" and t.value), ""
        )
        patient.birth_date = _birth_date(resource.birthDate)
        patient.preferred_language = _language(resource.communication)
        _check_fields(
            patient,
            {
                "family_name": "Patient.name.family",
                "given_name": "Patient.name.given",
                "mrn": "Patient.identifier",
                "mobile_phone": "Patient.telecom",
                "email": "Patient.telecom",
            },
        )
        if patient.mrn:
            clash = (
                Patient.objects.filter(organization=ctx.organization, mrn=patient.mrn)
                .exclude(pk=patient.pk)
                .first()
            )
            if clash:
                raise FhirError(
                    409,
                    f"Patient/{clash.pk} already has MRN '{patient.mrn}'. Update that patient, "
                    "or create with If-None-Exist: identifier=<system>|<MRN>.",
                    code="duplicate",
                    expression=["Patient.identifier"],
                )
        patient.save()
        return patient


def _mrn(identifiers: list | None) -> str:
    identifiers = [i for i in identifiers or [] if i.value]
    for identifier in identifiers:
        codes = [c.code for c in (identifier.type.coding or [])] if identifier.type else []
        if "MR" in codes:
            return identifier.value
    if len(identifiers) == 1 and identifiers[0].type is None:
        return identifiers[0].value
    return ""


def _mobile(telecoms: list | None, region: str | None) -> str:
    candidates = [
        (i, t)
        for i, t in enumerate(telecoms or [])
        if t.value and (t.system == "sms" or (t.system == "phone" and t.use == "mobile"))
    ]
    if not candidates:
        return ""
    # sms first (it is explicitly for texting), then by the sender's own rank.
    i, telecom = min(candidates, key=lambda c: (c[1].system != "sms", c[1].rank or 0, c[0]))
    return _phone(telecom.value, f"Patient.telecom[{i}]", region)


def _birth_date(value) -> date | None:
    if value is None:
        return None
    if not isinstance(value, date):
        raise FhirError(
            422,
            f"Patient.birthDate '{value}' is partial; Careline needs a full date (YYYY-MM-DD).",
            code="value",
            expression=["Patient.birthDate"],
        )
    return value


def _language(communications: list | None) -> str:
    ordered = sorted(communications or [], key=lambda c: not c.preferred)
    supported = set(Language.values)
    for communication in ordered:
        concept = communication.language
        codes = [c.code for c in concept.coding or [] if c.code] + [concept.text or ""]
        for code in codes:
            language = code.split("-")[0].strip().lower()
            if language in supported:
                return language
    return Language.ENGLISH


# --- Practitioner --------------------------------------------------------------------------


class PractitionerHandler(ModelHandler):
    resource_type = "Practitioner"
    documentation = (
        "The NPI is the identifier with system http://hl7.org/fhir/sid/us-npi. The name "
        "patients see is name.text, else prefix and family ('Dr Lee'), else given and family."
    )
    search_parameters = {
        "_id": SearchParameter("token", "Logical id."),
        "identifier": SearchParameter("token", "NPI."),
        "name": SearchParameter("string", "Any part of the name, contains (case-insensitive)."),
        "family": SearchParameter("string", "Family name, starts with."),
        "given": SearchParameter("string", "Given name, starts with."),
        "active": SearchParameter("token", "true or false."),
    }

    def queryset(self, ctx: Context) -> QuerySet:
        return Provider.objects.filter(organization=ctx.organization)

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

    def filter_family(self, ctx, value, params) -> Q:
        return Q(family_name__istartswith=value)

    def filter_given(self, ctx, value, params) -> Q:
        return Q(given_name__istartswith=value)

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

    def create(self, ctx: Context, resource) -> Provider:
        return self._save(ctx, Provider(organization=ctx.organization), resource)

    def update(self, ctx: Context, provider: Provider, resource) -> Provider:
        return self._save(ctx, provider, resource)

    def _save(self, ctx: Context, provider: Provider, resource) -> Provider:
        name = _pick_name(resource.name)
        if name is None:
            raise FhirError(422, "Practitioner.name is required.", expression=["Practitioner.name"])
        provider.family_name = name.family or ""
        provider.given_name = " ".join(name.given or [])
        prefix = " ".join(name.prefix or [])
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
        _check_fields(
            provider,
            {
                "display_name": "Practitioner.name",
                "family_name": "Practitioner.name.family",
                "given_name": "Practitioner.name.given",
            },
        )
        provider.save()
        return provider


# --- Location ------------------------------------------------------------------------------


class LocationHandler(ModelHandler):
    resource_type = "Location"
    documentation = (
        "A Location is a practice. Its time zone is the extension "
        f"{TIMEZONE_EXTENSION} (valueCode, an IANA zone; kept as is when absent). "
        "telecom system=sms is the practice's texting number (read back as the organization's "
        "default sender when the practice has none); the first telecom system=phone that is a "
        "real phone number is the front desk (internal extensions are not stored). "
        "identifier[0].value is the practice code feeds use."
    )
    search_parameters = {
        "_id": SearchParameter("token", "Logical id."),
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

    def create(self, ctx: Context, resource) -> Practice:
        return self._save(ctx, Practice(organization=ctx.organization), resource)

    def update(self, ctx: Context, practice: Practice, resource) -> Practice:
        return self._save(ctx, practice, resource)

    def _save(self, ctx: Context, practice: Practice, resource) -> Practice:
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
                practice.sender_number = _phone(telecom.value, f"Location.telecom[{i}]")
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
        _check_fields(
            practice,
            {
                "name": "Location.name",
                "code": "Location.identifier",
                "time_zone": "Location.extension",
                "address": "Location.address",
            },
        )
        clash = (
            Practice.objects.filter(organization=ctx.organization, code=practice.code)
            .exclude(pk=practice.pk)
            .first()
        )
        if clash:
            raise FhirError(
                409,
                f"Location/{clash.pk} already has identifier '{practice.code}'.",
                code="duplicate",
                expression=["Location.identifier"],
            )
        practice.save()
        return practice


# --- Schedule and Slot ---------------------------------------------------------------------


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
        "_id": SearchParameter("token", "Logical id."),
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


@dataclass(frozen=True)
class SlotRow:
    schedule: ScheduleRow
    start: datetime
    end: datetime
    free: bool

    @property
    def id(self) -> str:
        minutes = int((self.end - self.start).total_seconds() // 60)
        return f"{self.schedule.id}-{int(self.start.timestamp())}-{minutes}"


class SlotHandler(Handler):
    resource_type = "Slot"
    writable = False
    documentation = (
        "Open time computed from working hours, breaks, holidays, blocked periods and booked "
        "appointments. Read-only. Searches need schedule=; start= bounds the window (default "
        "the next 14 days, at most 90); only status=free is published. The slot length is the "
        "appointment-type's duration (code of an appointment type), default 20 minutes."
    )
    search_parameters = {
        "schedule": SearchParameter("reference", "Schedule/<id> (required)."),
        "start": SearchParameter("date", "Window: ge/gt for its start, lt/le for its end."),
        "status": SearchParameter("token", "free (the only status published)."),
        "appointment-type": SearchParameter("token", "Appointment type code: slot length."),
    }
    DEFAULT_WINDOW = timedelta(days=14)
    MAX_WINDOW = timedelta(days=90)
    MAX_SLOTS = 2000

    def get(self, ctx: Context, resource_id: str) -> SlotRow:
        parts = resource_id.split("-")
        if len(parts) != 4 or not all(p.isdigit() and len(p) < 12 for p in parts):
            raise not_found("Slot", resource_id)
        schedule = ScheduleHandler().get(ctx, f"{parts[0]}-{parts[1]}")
        start = datetime.fromtimestamp(int(parts[2]), tz=UTC)
        minutes = int(parts[3])
        if not 0 < minutes <= 24 * 60:
            raise not_found("Slot", resource_id)
        end = start + timedelta(minutes=minutes)
        found = find_open_slots(
            practice=schedule.practice,
            duration_minutes=minutes,
            after=start,
            providers=[schedule.provider],
            count=1,
            horizon_days=7,
        )
        free = bool(found) and found[0].start == start
        return SlotRow(schedule, start, end, free)

    def search(self, ctx, params, offset, count) -> tuple[int, list[Any]]:
        schedules = params.get("schedule", [])
        if len(schedules) != 1 or "," in schedules[0]:
            raise FhirError(400, "Slot search needs exactly one schedule=Schedule/<id>.")
        raw = schedules[0].strip()
        schedule_id = raw.split("/")[-1] if raw.startswith("Schedule/") or "/" not in raw else ""
        schedule = ScheduleHandler().get(ctx, schedule_id) if schedule_id else None
        if schedule is None:
            raise FhirError(400, f"schedule must be Schedule/<id>, got '{raw}'.")
        for status in params.get("status", []):
            if set(status.split(",")) != {"free"}:
                raise FhirError(400, "Only free slots are published: use status=free.")
        minutes = 20
        for code in params.get("appointment-type", []):
            token = parse_token(code)
            appointment_type = AppointmentType.objects.filter(
                organization=ctx.organization, code=token.code or ""
            ).first()
            if appointment_type is None:
                raise FhirError(400, f"appointment-type '{code}' is not a known code.")
            minutes = appointment_type.duration_minutes
        zone = schedule.practice.zone
        now = timezone.now()
        after, before = now, None
        for value in params.get("start", []):
            prefix, lo, hi = date_range(value, zone)
            if prefix in ("ge", "eq"):
                after = max(after, lo)
            elif prefix in ("gt", "sa"):
                after = max(after, hi)
            if prefix in ("lt", "eb"):
                before = lo if before is None else min(before, lo)
            elif prefix in ("le", "eq"):
                before = hi if before is None else min(before, hi)
            elif prefix not in ("ge", "gt", "sa"):
                raise FhirError(400, f"start supports eq, ge, gt, lt, le; got '{value}'.")
        before = min(before or after + self.DEFAULT_WINDOW, after + self.MAX_WINDOW)
        if before <= after:
            return 0, []
        horizon = (before - after).days + 2
        slots = [
            s
            for s in find_open_slots(
                practice=schedule.practice,
                duration_minutes=minutes,
                after=after,
                providers=[schedule.provider],
                count=self.MAX_SLOTS,
                horizon_days=horizon,
            )
            if s.end <= before
        ]
        rows = [SlotRow(schedule, s.start, s.end, True) for s in slots]
        return len(rows), rows[offset : offset + count] if count else []

    def render(self, ctx: Context, row: SlotRow) -> dict[str, Any]:
        return {
            "resourceType": "Slot",
            "id": row.id,
            "schedule": {"reference": f"Schedule/{row.schedule.id}"},
            "status": "free" if row.free else "busy",
            "start": _iso(row.start),
            "end": _iso(row.end),
        }


# --- Appointment ---------------------------------------------------------------------------

TO_FHIR_STATUS = {
    AppointmentStatus.BOOKED: "booked",
    AppointmentStatus.CONFIRMED: "booked",
    AppointmentStatus.ARRIVED: "arrived",
    AppointmentStatus.FULFILLED: "fulfilled",
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.NO_SHOW: "noshow",
    AppointmentStatus.ENTERED_IN_ERROR: "entered-in-error",
}
PARTICIPANT_MODELS: dict[str, type[models.Model]] = {
    "Patient": Patient,
    "Practitioner": Provider,
    "Location": Practice,
}
FROM_FHIR_STATUS = {
    "booked": AppointmentStatus.BOOKED,
    "arrived": AppointmentStatus.ARRIVED,
    "checked-in": AppointmentStatus.ARRIVED,
    "fulfilled": AppointmentStatus.FULFILLED,
    "cancelled": AppointmentStatus.CANCELLED,
    "noshow": AppointmentStatus.NO_SHOW,
    "entered-in-error": AppointmentStatus.ENTERED_IN_ERROR,
}


@dataclass(frozen=True)
class AppointmentInput:
    practice: Practice
    provider: Provider
    patient: Patient
    type_code: str
    type_name: str
    start: datetime
    end: datetime
    status: str
    external_system: str
    external_id: str
    updated_at: datetime | None
    note: str


class AppointmentHandler(ModelHandler):
    resource_type = "Appointment"
    documentation = (
        "Participants are one Patient, one Practitioner and one Location (optional when the "
        "practitioner works at one location only). Careline's 'confirmed' is status=booked "
        "with the patient participant status=accepted; sending accepted confirms the visit. "
        "A cancellation is status=cancelled with an optional cancelationReason. "
        "proposed, pending and waitlist are not stored. identifier[0] (system|value) is the "
        "sending system's id, used by conditional create and update. meta.lastUpdated, when "
        "sent, orders updates: an older one than already applied changes nothing. "
        "appointmentType.coding[0].code names the visit type, created on first use."
    )
    search_parameters = {
        "_id": SearchParameter("token", "Logical id."),
        "date": SearchParameter(
            "date",
            "Start time, with FHIR prefixes and partial dates. Values without a time zone "
            "are read in the practice's zone when one location= is given, else UTC.",
        ),
        "patient": SearchParameter("reference", "Patient/<id>."),
        "practitioner": SearchParameter("reference", "Practitioner/<id>."),
        "location": SearchParameter("reference", "Location/<id>."),
        "actor": SearchParameter("reference", "Patient, Practitioner or Location."),
        "status": SearchParameter("token", "FHIR status; booked includes confirmed visits."),
        "identifier": SearchParameter("token", "The sending system's id: system|value."),
    }
    ordering = ("start", "id")

    def queryset(self, ctx: Context) -> QuerySet:
        return Appointment.objects.filter(organization=ctx.organization).select_related(
            "appointment_type", "practice", "provider"
        )

    def filter_date(self, ctx, value, params) -> Q:
        zone = UTC
        locations = params.get("location", [])
        if len(locations) == 1 and "," not in locations[0]:
            practice = Practice.objects.filter(
                organization=ctx.organization, pk=reference_pk(locations[0], "Location")
            ).first()
            zone = practice.zone if practice else UTC
        return date_q("start", value, zone)

    def filter_patient(self, ctx, value, params) -> Q:
        return Q(patient_id=reference_pk(value, "Patient") or 0)

    def filter_practitioner(self, ctx, value, params) -> Q:
        return Q(provider_id=reference_pk(value, "Practitioner") or 0)

    def filter_location(self, ctx, value, params) -> Q:
        return Q(practice_id=reference_pk(value, "Location") or 0)

    def filter_actor(self, ctx, value, params) -> Q:
        for resource_type, field in (
            ("Patient", "patient_id"),
            ("Practitioner", "provider_id"),
            ("Location", "practice_id"),
        ):
            pk = reference_pk(value, resource_type)
            if pk and "/" in value:
                return Q(**{field: pk})
        raise FhirError(400, f"actor must be Patient/, Practitioner/ or Location/<id>: '{value}'.")

    def filter_status(self, ctx, value, params) -> Q:
        if value == "booked":
            return Q(status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED])
        if value in FROM_FHIR_STATUS:
            return Q(status=FROM_FHIR_STATUS[value])
        if value in ("proposed", "pending", "waitlist"):
            return Q(pk__in=[])
        raise FhirError(400, f"'{value}' is not an Appointment status.")

    def filter_identifier(self, ctx, value, params) -> Q:
        token = parse_token(value)
        q = Q(external_id=token.code) if token.code else ~Q(external_id="")
        if token.system is not None:
            q &= Q(external_system=token.system)
        return q

    def render(self, ctx: Context, appointment: Appointment) -> dict[str, Any]:
        status = appointment.status
        resource: dict[str, Any] = {
            "resourceType": "Appointment",
            "id": str(appointment.pk),
            "meta": {
                "lastUpdated": _iso(
                    max(
                        appointment.status_changed_at,
                        appointment.external_updated_at or appointment.status_changed_at,
                    )
                )
            },
        }
        if appointment.external_id:
            identifier = {"value": appointment.external_id}
            if appointment.external_system:
                identifier = {"system": appointment.external_system, **identifier}
            resource["identifier"] = [identifier]
        resource["status"] = TO_FHIR_STATUS[status]
        if status == AppointmentStatus.CANCELLED:
            resource["cancelationReason"] = _cancelation_reason(appointment)
        visit_type = appointment.appointment_type
        resource["appointmentType"] = {
            "coding": [{"code": visit_type.code, "display": visit_type.name}],
            "text": visit_type.name,
        }
        resource["start"] = _iso(appointment.start)
        resource["end"] = _iso(appointment.end)
        resource["minutesDuration"] = int(
            (appointment.end - appointment.start).total_seconds() // 60
        )
        resource["created"] = _iso(appointment.created_at)
        resource["participant"] = [
            {
                "actor": {"reference": f"Patient/{appointment.patient_id}"},
                "required": "required",
                "status": _patient_participation(appointment),
            },
            {
                "actor": {
                    "reference": f"Practitioner/{appointment.provider_id}",
                    "display": appointment.provider.display_name,
                },
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {
                    "reference": f"Location/{appointment.practice_id}",
                    "display": appointment.practice.name,
                },
                "required": "required",
                "status": "accepted",
            },
        ]
        return resource

    def create(self, ctx: Context, resource) -> Appointment:
        data = self._read(ctx, resource)
        if data.external_id:
            clash = Appointment.objects.filter(
                organization=ctx.organization,
                external_system=data.external_system,
                external_id=data.external_id,
            ).first()
            if clash:
                raise FhirError(
                    409,
                    f"Appointment/{clash.pk} already has identifier "
                    f"'{data.external_system}|{data.external_id}'. Update it with PUT "
                    "Appointment?identifier=<system>|<value>, or create with If-None-Exist.",
                    code="duplicate",
                    expression=["Appointment.identifier"],
                )
        return self._upsert(ctx, data, None)

    def update(self, ctx: Context, appointment: Appointment, resource) -> Appointment:
        data = self._read(ctx, resource)
        if data.external_id:
            clash = (
                Appointment.objects.filter(
                    organization=ctx.organization,
                    external_system=data.external_system,
                    external_id=data.external_id,
                )
                .exclude(pk=appointment.pk)
                .first()
            )
            if clash:
                raise FhirError(
                    409,
                    f"Appointment/{clash.pk} already has identifier "
                    f"'{data.external_system}|{data.external_id}'.",
                    code="duplicate",
                    expression=["Appointment.identifier"],
                )
        return self._upsert(ctx, data, appointment)

    def _upsert(
        self, ctx: Context, data: AppointmentInput, appointment: Appointment | None
    ) -> Appointment:
        with transaction.atomic():
            appointment_type = resolve_appointment_type(
                ctx.organization,
                code=data.type_code,
                name=data.type_name,
                duration_minutes=int((data.end - data.start).total_seconds() // 60),
            )
            result = upsert_external_appointment(
                organization=ctx.organization,
                practice=data.practice,
                provider=data.provider,
                patient=data.patient,
                appointment_type=appointment_type,
                start=data.start,
                end=data.end,
                status=data.status,
                source=ChangeSource.FHIR,
                external_system=data.external_system,
                external_id=data.external_id,
                updated_at=data.updated_at,
                appointment=appointment,
                note=data.note,
            )
        return self.queryset(ctx).get(pk=result.appointment.pk)

    def _read(self, ctx: Context, resource) -> AppointmentInput:
        org = ctx.organization
        fhir_status = resource.status
        if fhir_status not in FROM_FHIR_STATUS:
            raise FhirError(
                422,
                f"Appointment.status '{fhir_status}' is not stored by Careline: send booked, "
                "arrived, checked-in, fulfilled, cancelled, noshow or entered-in-error.",
                code="not-supported",
                expression=["Appointment.status"],
            )
        if resource.start is None or resource.end is None:
            raise FhirError(
                422,
                "Appointment.start and Appointment.end are required for a booked appointment.",
                code="required",
                expression=["Appointment.start", "Appointment.end"],
            )
        start, end = resource.start, resource.end
        if end <= start:
            raise FhirError(
                422,
                "Appointment.end must be after Appointment.start.",
                expression=["Appointment.end"],
            )
        found: dict[str, list] = {kind: [] for kind in PARTICIPANT_MODELS}
        patient_status = None
        for i, participant in enumerate(resource.participant or []):
            actor = participant.actor
            if actor is None or not actor.reference:
                continue
            path = f"Appointment.participant[{i}].actor"
            parts = actor.reference.split("/")
            kind = parts[-2] if len(parts) >= 2 else ""
            model = PARTICIPANT_MODELS.get(kind)
            if model is None:
                raise FhirError(
                    422,
                    f"{path} '{actor.reference}': Careline appointments take Patient, "
                    "Practitioner and Location participants only.",
                    code="not-supported",
                    expression=[path],
                )
            qs = model.objects.filter(organization=org)
            found[kind].append(_resolve(actor.reference, kind, path, qs))
            if kind == "Patient":
                patient_status = participant.status
        patients, providers, practices = found["Patient"], found["Practitioner"], found["Location"]
        for label, matches in (("Patient", patients), ("Practitioner", providers)):
            if len(matches) != 1:
                raise FhirError(
                    422,
                    f"An Appointment needs exactly one {label} participant; got {len(matches)}.",
                    code="required",
                    expression=["Appointment.participant"],
                )
        if len(practices) > 1:
            raise FhirError(
                422,
                f"An Appointment takes at most one Location participant; got {len(practices)}.",
                expression=["Appointment.participant"],
            )
        provider = providers[0]
        if not practices:
            known = list(provider.practices.all()[:2])
            if len(known) != 1:
                raise FhirError(
                    422,
                    "Add a Location participant: the practitioner works at "
                    f"{'no' if not known else 'more than one'} known location.",
                    code="required",
                    expression=["Appointment.participant"],
                )
            practices = known
        status = FROM_FHIR_STATUS[fhir_status]
        if status == AppointmentStatus.BOOKED and patient_status == "accepted":
            status = AppointmentStatus.CONFIRMED
        external_system, external_id = "", ""
        for identifier in resource.identifier or []:
            if identifier.value:
                external_system, external_id = identifier.system or "", identifier.value
                break
        if len(external_system) > 60 or len(external_id) > 120:
            raise FhirError(
                422,
                "Appointment.identifier: the system may have 60 characters and the value 120.",
                code="value",
                expression=["Appointment.identifier"],
            )
        code, name = _visit_type(resource)
        if len(code) > 40:
            raise FhirError(
                422,
                f"Appointment.appointmentType: code '{code[:50]}…' is longer than 40 characters.",
                code="value",
                expression=["Appointment.appointmentType"],
            )
        updated_at = resource.meta.lastUpdated if resource.meta else None
        return AppointmentInput(
            practice=practices[0],
            provider=provider,
            patient=patients[0],
            type_code=code,
            type_name=name,
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            status=status,
            external_system=external_system,
            external_id=external_id,
            updated_at=updated_at,
            note=_reason_text(resource.cancelationReason) if status == "cancelled" else "",
        )


def _visit_type(resource) -> tuple[str, str]:
    for concept in [resource.appointmentType, *(resource.serviceType or [])]:
        if concept is None:
            continue
        for coding in concept.coding or []:
            if coding.code:
                return coding.code, coding.display or concept.text or coding.code
        if concept.text:
            return concept.text[:40], concept.text
    return "visit", "Visit"


def _reason_text(concept) -> str:
    if concept is None:
        return "cancelled"
    codings = concept.coding or []
    text = concept.text or next((c.display or c.code for c in codings if c.display or c.code), "")
    return f"cancelled: {text}" if text else "cancelled"


def _cancelation_reason(appointment: Appointment) -> dict[str, Any]:
    if appointment.status_source in PATIENT_SOURCES:
        return {
            "coding": [{"system": CANCELLATION_REASON_SYSTEM, "code": "pat", "display": "Patient"}]
        }
    event = (
        appointment.events.filter(to_status=AppointmentStatus.CANCELLED)
        .order_by("-occurred_at", "-id")
        .first()
    )
    note = event.note if event else ""
    text = note.removeprefix("cancelled: ").removeprefix("cancelled") or (
        f"Cancelled by {appointment.get_status_source_display()}"
    )
    return {"text": text}


def _patient_participation(appointment: Appointment) -> str:
    status = appointment.status
    if status == AppointmentStatus.CANCELLED and appointment.status_source in PATIENT_SOURCES:
        return "declined"
    if appointment.confirmed_at or status in (
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.ARRIVED,
        AppointmentStatus.FULFILLED,
    ):
        return "accepted"
    return "needs-action"
