"""Patient: a patient of the organization, found by any of its identifiers (system and
value), texted on their mobile number."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.models import Q, QuerySet
from django.utils import timezone

from careline.clinics.validators import normalize_phone
from careline.integrations.fhir.errors import FhirError
from careline.integrations.fhir.resources.handler import (
    LAST_UPDATED,
    LOGICAL_ID,
    Context,
    EditableModelHandler,
    PersonNameFilters,
    SearchParameter,
    check_fields,
    phone,
    pick_name,
)
from careline.integrations.fhir.search import date_q, parse_token
from careline.patients.identifiers import (
    MAX_SYSTEM,
    MAX_VALUE,
    Identifier,
    distinct,
    identified_patients,
    mrn_copy,
)
from careline.patients.languages import language_as_received, language_code
from careline.patients.models import Language, Patient, PatientIdentifier, PhoneSystem, PhoneUse
from careline.patients.records import (
    IdentifierConflict,
    add_patient,
    keep_identifiers,
    save_patient,
)

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# Set on a Patient's sms telecom while the number is opted out of texts (when it opted out).
SMS_OPT_OUT_EXTENSION = "https://careline.dev/fhir/StructureDefinition/sms-opt-out"
BCP47 = "urn:ietf:bcp:47"
# On Patient.communication when the sender's language is not one Careline texts in: the
# language as received (the coding says the language texts actually go in).
LANGUAGE_RECEIVED_EXTENSION = "https://careline.dev/fhir/StructureDefinition/language-received"
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


class PatientHandler(PersonNameFilters, EditableModelHandler):
    resource_type = "Patient"
    keeps_history = True
    model = Patient
    documentation = (
        "Every identifier is kept and returned; a patient is found by (system, value), so "
        "MRN 12345 of one system is not MRN 12345 of another. An identifier without a "
        "system is in the API key's identifier system (default urn:careline:<organization>:mrn). "
        "An identifier naming another patient is refused (409). A PUT replaces the "
        "identifiers of the systems it sends and keeps the others'. The mobile "
        "number is telecom system=sms, or system=phone with use=mobile; it must be a real "
        "number (digits without a country code are read in the patient's address country, "
        "else the server's default region). Every phone, fax and pager number is kept with "
        "its use and returned. communication.language picks English or Spanish texts; "
        "other languages get English, and the language received is kept and returned in "
        "the communication's language-received extension. The home address (else the "
        "first) is kept; a US state in it sets the patient's time zone for quiet hours."
    )
    search_parameters = {
        "_id": LOGICAL_ID,
        "_lastUpdated": LAST_UPDATED,
        "identifier": SearchParameter(
            "token",
            "system|value, value (any system), |value (identifiers sent without a system) "
            "or system| (any value in the system).",
        ),
        "telecom": SearchParameter("token", "Mobile number in any format, or e-mail."),
        "phone": SearchParameter("token", "Mobile number in any format."),
        "email": SearchParameter("token", "E-mail address."),
        "family": SearchParameter("string", "Family name, starts with (case-insensitive)."),
        "given": SearchParameter("string", "Given name, starts with (case-insensitive)."),
        "name": SearchParameter("string", "Family or given name, starts with."),
        "birthdate": SearchParameter("date", "Birth date, with FHIR date prefixes."),
    }

    def queryset(self, ctx: Context) -> QuerySet:
        return super().queryset(ctx).prefetch_related("identifiers")

    def filter_identifier(self, ctx, value, params) -> Q:
        token = parse_token(value)
        rows = PatientIdentifier.objects.filter(organization=ctx.organization)
        if token.system is not None:
            rows = rows.filter(system=token.system or ctx.namespace)
        if token.code is not None:
            rows = rows.filter(value=token.code)
        return Q(pk__in=rows.values("patient_id"))

    def filter_telecom(self, ctx, value, params) -> Q:
        token = parse_token(value)
        if token.system == "email" or "@" in (token.code or ""):
            return self.filter_email(ctx, token.code or "", params)
        return Q(mobile_phone=phone(token.code, "telecom"))

    def filter_phone(self, ctx, value, params) -> Q:
        return Q(mobile_phone=phone(parse_token(value).code, "phone"))

    def filter_email(self, ctx, value, params) -> Q:
        return Q(email__iexact=parse_token(value).code or "")

    def filter_name(self, ctx, value, params) -> Q:
        return Q(family_name__istartswith=value) | Q(given_name__istartswith=value)

    def filter_birthdate(self, ctx, value, params) -> Q:
        return date_q("birth_date", value, UTC, as_date=True)

    def render(self, ctx: Context, patient: Patient) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": "Patient", "id": str(patient.pk)}
        identifiers = [_render_identifier(i) for i in patient.identifiers.all()]
        if identifiers:
            resource["identifier"] = identifiers
        resource["active"] = patient.merged_into_id is None
        if patient.merged_into_id is not None:
            resource["link"] = [
                {"other": {"reference": f"Patient/{patient.merged_into_id}"}, "type": "replaced-by"}
            ]
        name: dict[str, Any] = {"use": "official", "family": patient.family_name}
        if patient.given_name.split():
            name["given"] = patient.given_name.split()
        resource["name"] = [name]
        telecom = []
        for number in patient.phone_list:
            if number["texted"]:
                sms: dict[str, Any] = {"system": "sms", "value": number["value"], "use": "mobile"}
                consent = patient.sms_consent
                if consent is not None and consent.opted_out:
                    # The number stays the patient's; it just may not be texted.
                    sms["extension"] = [
                        {
                            "url": SMS_OPT_OUT_EXTENSION,
                            "valueDateTime": consent.changed_at.isoformat(),
                        }
                    ]
                telecom.append(sms)
                continue
            point = {"system": number.get("system") or PhoneSystem.PHONE, "value": number["value"]}
            if number.get("use"):
                point["use"] = number["use"]
            telecom.append(point)
        if patient.email:
            telecom.append({"system": "email", "value": patient.email})
        if telecom:
            resource["telecom"] = telecom
        if patient.birth_date:
            resource["birthDate"] = patient.birth_date.isoformat()
        if patient.address:
            address: dict[str, Any] = {"use": "home"}
            if patient.address_line:
                address["line"] = [patient.address_line]
            for key, value in (
                ("city", patient.city),
                ("state", patient.state),
                ("postalCode", patient.postal_code),
                ("country", patient.country),
            ):
                if value:
                    address[key] = value
            resource["address"] = [address]
        communication: dict[str, Any] = {
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
        if patient.language_received:
            communication["extension"] = [
                {"url": LANGUAGE_RECEIVED_EXTENSION, "valueString": patient.language_received}
            ]
        resource["communication"] = [communication]
        return resource

    def save(self, ctx: Context, patient: Patient, resource) -> Patient:
        name = pick_name(resource.name)
        if name is None:
            raise FhirError(
                422, "Patient.name is required (family and given).", expression=["Patient.name"]
            )
        patient.family_name = name.family or ""
        patient.given_name = " ".join(part for part in name.given or [] if part)
        identifiers = _identifiers(ctx, resource.identifier)
        patient.mrn = mrn_copy(identifiers) or patient.mrn
        region = next(
            (
                a.country.upper()
                for a in resource.address or []
                if a.country and len(a.country) == 2 and a.country.isalpha()
            ),
            None,
        )
        patient.mobile_phone = _mobile(resource.telecom, region)
        patient.phones = _phones(resource.telecom, region)
        _address(patient, resource.address)
        patient.email = next(
            (t.value for t in resource.telecom or [] if t.system == "email" and t.value), ""
        )
        patient.birth_date = _birth_date(resource.birthDate)
        patient.preferred_language = _language(resource.communication)
        patient.language_received = _language_received(resource.communication)
        check_fields(
            patient,
            {
                "family_name": "Patient.name.family",
                "given_name": "Patient.name.given",
                "mrn": "Patient.identifier",
                "mobile_phone": "Patient.telecom",
                "email": "Patient.telecom",
                "address_line": "Patient.address.line",
                "city": "Patient.address.city",
                "state": "Patient.address.state",
                "postal_code": "Patient.address.postalCode",
                "country": "Patient.address.country",
            },
        )
        others = {
            pid: keys
            for pid, keys in identified_patients(ctx.organization.pk, identifiers).items()
            if pid != patient.pk
        }
        if others:
            other = min(others)
            raise FhirError(
                409,
                f"Patient/{other} already has the identifier {', '.join(others[other])}. "
                "Update that patient, or create with If-None-Exist: identifier=<system>|<value>.",
                code="duplicate",
                expression=["Patient.identifier"],
            )
        if patient.pk is None:
            try:
                return add_patient(patient, identifiers)
            except IntegrityError as exc:  # another request stored one a moment ago
                raise FhirError(
                    409,
                    "Another request has just stored a patient with one of these identifiers; "
                    "search for it, or create with If-None-Exist.",
                    code="duplicate",
                    expression=["Patient.identifier"],
                ) from exc
        try:
            keep_identifiers(patient, identifiers, replace_systems=True, new_version=False)
        except IdentifierConflict as exc:  # another request stored it a moment ago
            raise FhirError(
                409,
                f"Patient/{exc.other_patient_id} already has the identifier "
                f"{', '.join(exc.taken)}.",
                code="duplicate",
                expression=["Patient.identifier"],
            ) from exc
        return save_patient(patient)


def _identifiers(ctx: Context, identifiers: list | None) -> list[Identifier]:
    """Every identifier with a value, in the client's identifier system when it names none."""
    found = []
    for n, identifier in enumerate(identifiers or []):
        if not identifier.value:
            continue
        path = f"Patient.identifier[{n}]"
        system = (identifier.system or "").strip() or ctx.namespace
        value = identifier.value.strip()
        for what, text, limit in (("system", system, MAX_SYSTEM), ("value", value, MAX_VALUE)):
            if len(text) > limit:
                raise FhirError(
                    422,
                    f"{path}.{what} is longer than {limit} characters.",
                    code="value",
                    expression=[f"{path}.{what}"],
                )
        concept = identifier.type
        codings = [c for c in (concept.coding or []) if c.code] if concept else []
        v2 = [c.code for c in codings if c.system == V2_0203]
        type_code = (v2 or [c.code for c in codings] or [""])[0]
        type_text = (concept.text or "").strip() if concept else ""
        found.append(Identifier(system, value, type_code[:20], type_text[:100]))
    return distinct(found)


def _render_identifier(row: PatientIdentifier) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if row.type_code.upper() == "MR":
        rendered["use"] = "usual"
    if row.type_code or row.type_text:
        concept: dict[str, Any] = {}
        if row.type_code:
            concept["coding"] = [{"system": V2_0203, "code": row.type_code}]
        if row.type_text:
            concept["text"] = row.type_text
        rendered["type"] = concept
    rendered["system"] = row.system
    rendered["value"] = row.value
    return rendered


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
    return phone(telecom.value, f"Patient.telecom[{i}]", region)


# FHIR ContactPoint use values Careline keeps (work, home, temp, old, mobile).
_USES = frozenset(PhoneUse.values)
_SYSTEMS = {
    "phone": PhoneSystem.PHONE,
    "sms": PhoneSystem.SMS,
    "fax": PhoneSystem.FAX,
    "pager": PhoneSystem.PAGER,
}


def _phones(telecoms: list | None, region: str | None) -> list[dict[str, str]]:
    """Every phone, text, fax and pager number with its use: E.164 when valid, else as
    sent (only the texted number must be valid; a landline is shown to staff as is)."""
    found = []
    for telecom in telecoms or []:
        if telecom.system not in _SYSTEMS or not telecom.value:
            continue
        try:
            value = normalize_phone(telecom.value, region)
        except ValidationError:
            value = telecom.value.strip()[:40]
        use = PhoneUse.MOBILE if telecom.system == "sms" else telecom.use
        found.append(
            {
                "system": _SYSTEMS[telecom.system],
                "use": use if use in _USES else "",
                "value": value,
            }
        )
    return found


def _address(patient: Patient, addresses: list | None) -> None:
    """The home address, else the first one (a billing or old address says less)."""
    addresses = [a for a in addresses or [] if a.use not in ("old", "billing")] or list(
        addresses or []
    )
    chosen = next((a for a in addresses if a.use == "home"), addresses[0] if addresses else None)
    patient.address_line = ", ".join(line for line in (chosen.line or []) if line) if chosen else ""
    patient.city = (chosen.city or "") if chosen else ""
    patient.state = (chosen.state or "") if chosen else ""
    patient.postal_code = (chosen.postalCode or "") if chosen else ""
    patient.country = (chosen.country or "") if chosen else ""


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
    if not EARLIEST_BIRTH_DATE <= value <= timezone.localdate() + timedelta(days=1):
        # A day's grace: the sender's today may be ahead of the server's.
        raise FhirError(
            422,
            f"Patient.birthDate '{value}' must be between {EARLIEST_BIRTH_DATE} and today.",
            code="value",
            expression=["Patient.birthDate"],
        )
    return value


def _language(communications: list | None) -> str:
    """The preferred communication first; English when none is a language we text in."""
    for concept in _languages(communications):
        codes = [c.code for c in concept.coding or [] if c.code] + [concept.text or ""]
        for code in codes:
            language = language_code(code)
            if language:
                return language
    return Language.ENGLISH


def _language_received(communications: list | None) -> str:
    """The preferred language as sent (e.g. "Tagalog (tl)") when Careline does not text
    in any of them, so staff see what was asked for; "" otherwise."""
    concepts = _languages(communications)
    if not concepts or _language(communications) != Language.ENGLISH:
        return ""
    # A client that read the patient and writes it back (English, with the extension)
    # keeps what the EHR asked for.
    echoed = next(
        (
            ext.valueString
            for c in communications or []
            for ext in c.extension or []
            if ext.url == LANGUAGE_RECEIVED_EXTENSION and ext.valueString
        ),
        "",
    )
    if echoed:
        return echoed.strip()[:80]
    if any(
        language_code(code)
        for concept in concepts
        for code in [c.code for c in concept.coding or [] if c.code] + [concept.text or ""]
    ):
        return ""
    concept = concepts[0]
    coding = next((c for c in concept.coding or [] if c.code or c.display), None)
    code = (coding.code or "") if coding else ""
    text = concept.text or ((coding.display or "") if coding else "")
    return language_as_received(code, text)


def _languages(communications: list | None) -> list:
    ordered = sorted(communications or [], key=lambda c: not c.preferred)
    return [c.language for c in ordered if c.language is not None]
