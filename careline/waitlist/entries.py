"""Joining the waitlist: one active entry per patient, practice and visit type."""

from __future__ import annotations

import logging
from datetime import date

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from careline.clinics.models import AppointmentType, Practice, Provider
from careline.patients.models import Patient
from careline.scheduling.models import Appointment
from careline.waitlist.models import WaitlistEntry, WaitlistOffer

logger = logging.getLogger(__name__)

MAX_RANGE_DAYS = 120


class WaitlistError(Exception):
    """A waitlist request that cannot be accepted; the message says why."""


def join_waitlist(
    *,
    patient: Patient,
    practice: Practice,
    appointment_type: AppointmentType,
    earliest: date,
    latest: date,
    source: str,
    provider: Provider | None = None,
    appointment: Appointment | None = None,
) -> WaitlistEntry:
    """Put the patient on the practice's waitlist for local days earliest..latest.

    A patient has one active entry per practice and visit type; asking again updates it
    and keeps their place in line."""
    today = timezone.now().astimezone(practice.zone).date()
    if latest < earliest:
        raise WaitlistError(_("The last day must not be before the first day."))
    if latest < today:
        raise WaitlistError(_("Those days have passed."))
    earliest = max(earliest, today)
    if (latest - earliest).days > MAX_RANGE_DAYS:
        raise WaitlistError(
            _("Choose a range of at most %(days)s days.") % {"days": MAX_RANGE_DAYS}
        )
    if patient.organization_id != practice.organization_id or (
        appointment_type.organization_id != practice.organization_id
    ):
        raise WaitlistError(_("That visit type is not offered at this practice."))
    if provider is not None and not provider.practices.filter(pk=practice.pk).exists():
        raise WaitlistError(_("That provider does not work at this practice."))
    if appointment is not None and appointment.patient_id != patient.pk:
        raise WaitlistError(_("That visit belongs to someone else."))
    values = {
        "organization_id": practice.organization_id,
        "provider": provider,
        "appointment": appointment,
        "earliest_date": earliest,
        "latest_date": latest,
        "source": source,
    }
    with transaction.atomic():
        entry = (
            WaitlistEntry.objects.select_for_update()
            .filter(
                patient=patient, practice=practice, appointment_type=appointment_type, active=True
            )
            .first()
        )
        if entry is None:
            entry = WaitlistEntry.objects.create(
                patient=patient,
                practice=practice,
                appointment_type=appointment_type,
                created_at=timezone.now(),
                **values,
            )
        else:
            for field, value in values.items():
                setattr(entry, field, value)
            entry.save()
    logger.info("Waitlist entry %s for practice %s", entry.pk, practice.pk)
    return entry


def move_entries_to_patient(prior_patient_id: int, survivor_id: int) -> int:
    """An EHR merged two records of one person (ADT^A40): the prior record's places on the
    waitlist are the survivor's from now on, so offers go to the surviving record. Where
    both records wait for the same practice and visit type, the person keeps one active
    place: the one an offer awaits an answer on, else the one first in line (as asking
    again keeps it, join_waitlist); the other is closed as merged. Returns how many
    entries moved."""
    with transaction.atomic():
        offered = WaitlistOffer.objects.filter(
            entry_id=OuterRef("pk"), state=WaitlistOffer.State.PENDING
        )
        active = (
            WaitlistEntry.objects.select_for_update()
            .filter(patient_id__in=(prior_patient_id, survivor_id), active=True)
            .annotate(offered=Exists(offered))
            .order_by("-offered", "created_at", "id")
        )
        first_in_line: set[tuple[int, int]] = set()
        duplicates = []
        for entry_id, practice_id, type_id in active.values_list(
            "pk", "practice_id", "appointment_type_id"
        ):
            if (practice_id, type_id) in first_in_line:
                duplicates.append(entry_id)
            first_in_line.add((practice_id, type_id))
        if duplicates:
            WaitlistEntry.objects.filter(pk__in=duplicates).update(
                active=False, closed_at=timezone.now(), closed_reason=WaitlistEntry.Closed.MERGED
            )
            logger.info("Waitlist entries %s closed: merged into another record's", duplicates)
        return WaitlistEntry.objects.filter(patient_id=prior_patient_id).update(
            patient_id=survivor_id
        )


def close_entry(entry_id: int, reason: str, now) -> None:
    """The patient's place on the waitlist ends (filled, withdrawn, expired)."""
    WaitlistEntry.objects.filter(pk=entry_id).update(
        active=False, closed_at=now, closed_reason=reason
    )
