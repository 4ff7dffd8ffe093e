"""Appointment: a visit of one patient with one practitioner at one location. Writes go
through the external-appointment upsert, like HL7's, so the two feeds agree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import models, transaction
from django.db.models import Q, QuerySet

from careline.clinics.directory import appointment_type_for_code
from careline.clinics.models import Practice, Provider
from careline.integrations.fhir.errors import FhirError
from careline.integrations.fhir.resources.handler import (
    LAST_UPDATED,
    LOGICAL_ID,
    Context,
    ModelHandler,
    SearchParameter,
    iso,
    refuse_duplicate,
    resolve,
)
from careline.integrations.fhir.search import date_q, parse_token, reference_pk
from careline.patients.models import Patient
from careline.scheduling.appointments import LONGEST_VISIT, VisitTimeError, check_visit_times
from careline.scheduling.external import upsert_external_appointment
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

CANCELLATION_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
PATIENT_SOURCES = (ChangeSource.PATIENT_TEXT, ChangeSource.PATIENT_LINK, ChangeSource.PATIENT_CALL)
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
    keeps_history = True
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
        "_id": LOGICAL_ID,
        "_lastUpdated": LAST_UPDATED,
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
        resource["start"] = iso(appointment.start)
        resource["end"] = iso(appointment.end)
        minutes = int((appointment.end - appointment.start).total_seconds() // 60)
        if minutes > 0:
            # A positiveInt: a shorter visit stored before the door refused them has none.
            resource["minutesDuration"] = minutes
        resource["created"] = iso(appointment.created_at)
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
        return self._upsert(ctx, self._read(ctx, resource), None)

    def update(self, ctx: Context, appointment: Appointment, resource) -> Appointment:
        return self._upsert(ctx, self._read(ctx, resource), appointment)

    def _upsert(
        self, ctx: Context, data: AppointmentInput, appointment: Appointment | None
    ) -> Appointment:
        if data.external_id:
            hint = (
                ""
                if appointment
                else " Update it with PUT Appointment?identifier=<system>|<value>, or create "
                "with If-None-Exist."
            )
            refuse_duplicate(
                Appointment.objects.filter(
                    organization=ctx.organization,
                    external_system=data.external_system,
                    external_id=data.external_id,
                ),
                appointment,
                "Appointment.identifier",
                f"already has identifier '{data.external_system}|{data.external_id}'.{hint}",
            )
        with transaction.atomic():
            appointment_type = appointment_type_for_code(
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
        try:
            check_visit_times(start, end)
        except VisitTimeError as exc:
            path = f"Appointment.{exc.field}"
            raise FhirError(422, f"{path} {exc.message}", code="value", expression=[path]) from exc
        if resource.minutesDuration is not None and not (
            0 < resource.minutesDuration <= LONGEST_VISIT.total_seconds() // 60
        ):
            raise FhirError(
                422,
                "Appointment.minutesDuration must be from 1 to 1440 (24 hours).",
                code="value",
                expression=["Appointment.minutesDuration"],
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
            found[kind].append(resolve(actor.reference, kind, path, qs))
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
        if len(external_system) > 255 or len(external_id) > 120:
            raise FhirError(
                422,
                "Appointment.identifier: the system may have 255 characters and the value 120.",
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
        if updated_at is not None:
            try:
                check_visit_times(updated_at)
            except VisitTimeError as exc:
                # Its years are the visits' (an update dated 9999 would freeze the visit).
                raise FhirError(
                    422,
                    f"Appointment.meta.lastUpdated {exc.message}",
                    code="value",
                    expression=["Appointment.meta.lastUpdated"],
                ) from exc
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
