"""Appointments owned by an outside system (EHR, practice management) arriving by FHIR, HL7 or CSV.

The outside system is the source of truth for its calendar: its appointments may overlap,
and its statuses are applied as sent. Two things stay Careline's: a patient's confirmation
is not erased by a feed that does not know about it, and a message older than the newest one
applied never rolls an appointment back. `feed_change` is the one place that decides what
a feed's version of a known visit means (moved? confirmation kept?); FHIR and HL7 apply it
row by row here, the CSV importer in bulk.

Reminders are re-planned through the scheduling.changes seam (messaging subscribes), in
the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from careline.clinics.directory import link_providers
from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.patients.models import Patient
from careline.patients.records import set_home_practice_if_none
from careline.scheduling import changes
from careline.scheduling.appointments import (
    change_status,
    check_visit_times,
    record_change,
    record_new_visits,
    save_version,
)
from careline.scheduling.models import Appointment, AppointmentStatus


@dataclass(frozen=True)
class ExternalUpsert:
    appointment: Appointment
    created: bool
    # False when the message was older than the newest one already applied.
    applied: bool


def upsert_external_appointment(
    *,
    organization: Organization,
    practice: Practice,
    provider: Provider,
    patient: Patient,
    appointment_type: AppointmentType,
    start: datetime,
    end: datetime,
    status: str,
    source: str,
    external_system: str = "",
    external_id: str = "",
    updated_at: datetime | None = None,
    appointment: Appointment | None = None,
    note: str = "",
) -> ExternalUpsert:
    """Create or update the appointment matched by `appointment` or by its external id.

    `updated_at` is when the outside system last changed it (default: now); a message older
    than the one last applied changes nothing. Reminders are re-planned in the same
    transaction, so an appointment never exists without its reminder plan.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    # Every door checks first to name the field its own way; this keeps a door that
    # forgot from storing a visit the reminder worker cannot handle.
    check_visit_times(start, end)
    if status not in AppointmentStatus.values:
        raise ValueError(f"Unknown appointment status '{status}'.")
    now = timezone.now()
    visit = ExternalVisit(
        practice=practice,
        provider=provider,
        patient=patient,
        appointment_type=appointment_type,
        start=start,
        end=end,
        status=status,
        source=source,
        external_system=external_system,
        external_id=external_id,
        updated_at=updated_at or now,
        note=note[:200],
    )
    with transaction.atomic():
        current = _locked_match(organization, external_system, external_id, appointment)
        created = False
        if current is None:
            try:
                with transaction.atomic():
                    current = _create(organization, visit, now)
                    created = True
            except IntegrityError:
                # A concurrent message created it first; apply this one as an update.
                current = _locked_match(organization, external_system, external_id, None)
                if current is None:
                    raise
        if not created:
            if current.external_updated_at and visit.updated_at < current.external_updated_at:
                return ExternalUpsert(current, created=False, applied=False)
            current = _update(current, visit, now)
        _link_practice(current, provider, practice, patient)
    return ExternalUpsert(current, created=created, applied=True)


def add_external_appointments(
    organization_id: int, visits: list[ExternalVisit]
) -> list[Appointment]:
    """Visits an outside system booked that Careline does not have yet (the caller looked
    their external ids up in this transaction), created together: each as
    `upsert_external_appointment` creates one, in a few multi-row statements for all (a
    feed's group of new bookings). Reminders are planned through the seam, as for one.
    A visit created meanwhile by another connection fails the unique constraint
    (IntegrityError): the caller then takes each visit alone."""
    for visit in visits:
        check_visit_times(visit.start, visit.end)
        if visit.status not in AppointmentStatus.values:
            raise ValueError(f"Unknown appointment status '{visit.status}'.")
        if visit.patient.pk is None:
            raise ValueError("The patient must be stored first.")
    if not visits:
        return []
    now = timezone.now()
    appointments = [
        Appointment(
            organization_id=organization_id,
            **visit.placement(),
            status=visit.status,
            allow_overlap=True,
            external_system=visit.external_system,
            external_id=visit.external_id,
            external_updated_at=visit.updated_at,
        )
        for visit in visits
    ]
    sources = {visit.source for visit in visits}
    # No savepoint of its own (a round trip each on PostgreSQL): a failure fails the
    # caller's.
    with transaction.atomic(savepoint=False):
        for source in sorted(sources):
            mine = [(a, v) for a, v in zip(appointments, visits, strict=True) if v.source == source]
            record_new_visits(
                [a for a, _ in mine], source=source, at=now, notes=[v.note for _, v in mine]
            )
        link_providers({(visit.provider.pk, visit.practice.pk) for visit in visits})
        for visit in visits:
            set_home_practice_if_none(visit.patient, visit.practice.pk)
    return appointments


@dataclass(frozen=True)
class ExternalVisit:
    practice: Practice
    provider: Provider
    patient: Patient
    appointment_type: AppointmentType
    start: datetime
    end: datetime
    status: str
    source: str
    external_system: str
    external_id: str
    updated_at: datetime
    note: str

    def placement(self) -> dict:
        """Who is seen by whom, where and when: what the outside system decides."""
        return {
            "practice": self.practice,
            "provider": self.provider,
            "patient": self.patient,
            "appointment_type": self.appointment_type,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class FeedChange:
    """What a feed's version of a known visit means for it."""

    status: str  # the status to store
    # A new time or provider is a new visit for the patient: a confirmation lapses.
    moved: bool
    # The feed reports a confirmation of a booked visit: apply it as a confirmation.
    confirms: bool


def feed_change(
    current: Appointment, *, start: datetime, provider_id: int, status: str
) -> FeedChange:
    """How a feed's `status`, `start` and provider change `current`. A feed that does not
    know about the patient's confirmation keeps it, unless the visit moved."""
    moved = start != current.start or provider_id != current.provider_id
    confirms = (
        status == AppointmentStatus.CONFIRMED
        and current.status == AppointmentStatus.BOOKED
        and not moved
    )
    if status == AppointmentStatus.BOOKED and current.status == AppointmentStatus.CONFIRMED:
        status = AppointmentStatus.BOOKED if moved else AppointmentStatus.CONFIRMED
    return FeedChange(status=status, moved=moved, confirms=confirms)


def _locked_match(
    organization: Organization,
    external_system: str,
    external_id: str,
    appointment: Appointment | None,
) -> Appointment | None:
    qs = Appointment.objects.select_for_update()
    if appointment is not None:
        return qs.get(pk=appointment.pk)
    if not external_id:
        return None
    return qs.filter(
        organization=organization, external_system=external_system, external_id=external_id
    ).first()


def _create(organization: Organization, visit: ExternalVisit, now: datetime) -> Appointment:
    appointment = Appointment(
        organization=organization,
        **visit.placement(),
        allow_overlap=True,
        external_system=visit.external_system,
        external_id=visit.external_id,
        external_updated_at=visit.updated_at,
    )
    record_change(appointment, visit.status, source=visit.source, note=visit.note, at=now)
    return appointment


def _update(current: Appointment, visit: ExternalVisit, now: datetime) -> Appointment:
    change = feed_change(
        current, start=visit.start, provider_id=visit.provider.id, status=visit.status
    )
    moved = change.moved
    old_status, old_start = current.status, current.start
    # A confirmation is applied below through the state machine, like one by text.
    status = old_status if change.confirms else change.status
    for field, value in visit.placement().items():
        setattr(current, field, value)
    current.allow_overlap = True
    if visit.external_id:
        current.external_system, current.external_id = visit.external_system, visit.external_id
    current.external_updated_at = visit.updated_at
    if status != old_status or moved:
        record_change(
            current,
            status,
            source=visit.source,
            note=visit.note or ("rescheduled" if moved else ""),
            old_start=old_start if moved else None,
            at=now,
        )
    else:
        save_version(current)
        if not change.confirms:
            # Nothing the history records changed, but the visit's details (its type)
            # may have: reminders are re-planned all the same.
            changes.appointments_changed([current.pk])
    if change.confirms:
        current = change_status(
            current, AppointmentStatus.CONFIRMED, source=visit.source, note=visit.note, at=now
        )
    return current


def _link_practice(
    appointment: Appointment, provider: Provider, practice: Practice, patient: Patient
) -> None:
    # The outside system's calendar says where people work and where patients are seen.
    link_providers([(provider.pk, practice.pk)])
    set_home_practice_if_none(patient, practice.pk)
