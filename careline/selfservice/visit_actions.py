"""What a patient may do from a visit link: confirm, cancel, move, see details."""

from __future__ import annotations

import logging
from datetime import date, datetime
from urllib.parse import quote_plus

from django.db import transaction
from django.utils.translation import gettext as _

from careline.scheduling.appointments import (
    InvalidTransition,
    SlotUnavailable,
    change_status,
    move_appointment,
)
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from careline.selfservice import booking, links
from careline.selfservice.models import LinkPurpose, PatientLink

logger = logging.getLogger(__name__)

BIRTH_DATE_MAX_FAILURES = 5


class LinkActionRefused(Exception):
    """The visit cannot take this action any more (e.g. already cancelled)."""


def directions_url(address: str) -> str:
    """A maps search for the practice's address (the practice's, never the patient's)."""
    return f"https://www.google.com/maps/search/?api=1&query={quote_plus(address)}"


def confirm(link: PatientLink) -> Appointment:
    """Confirming leaves a visit's page link usable: the patient may still need to cancel
    later. An email's confirm link does its one thing once (spent in the same
    transaction); the email's cancel link stays for that."""
    try:
        with transaction.atomic():
            if link.purpose == LinkPurpose.CONFIRM:
                links.spend(link)
            return change_status(
                link.appointment, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_LINK
            )
    except InvalidTransition as exc:
        raise LinkActionRefused(_("This visit can no longer be confirmed.")) from exc


def cancel(link: PatientLink) -> Appointment:
    """Cancel the visit and spend the link, in one transaction."""
    try:
        with transaction.atomic():
            links.spend(link)
            appointment = change_status(
                link.appointment, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_LINK
            )
    except InvalidTransition as exc:
        raise LinkActionRefused(_("This visit can no longer be cancelled.")) from exc
    logger.info("Appointment %s cancelled from link %s", appointment.pk, link.pk)
    return appointment


def reschedule(link: PatientLink, new_start: datetime, provider_id: int) -> tuple[Appointment, str]:
    """Move the visit to an open slot; spends this link and returns a fresh one for the
    moved visit. SlotUnavailable when the time was just taken."""
    appointment = link.appointment
    booking.check_patient_choice(appointment.practice, new_start)
    provider = (
        appointment.practice.providers.filter(active=True, pk=provider_id).first()
        if provider_id != appointment.provider_id
        else appointment.provider
    )
    if provider is None:
        raise SlotUnavailable(_("That time is not available."))
    try:
        with transaction.atomic():
            links.spend(link)
            moved = move_appointment(
                appointment,
                new_start=new_start,
                new_provider=provider,
                source=ChangeSource.PATIENT_LINK,
            )
            token = links.issue_manage_link(moved.pk)
    except InvalidTransition as exc:
        raise LinkActionRefused(_("This visit can no longer be moved.")) from exc
    logger.info("Appointment %s moved from link %s", moved.pk, link.pk)
    return moved, token


def check_birth_date(link: PatientLink, entered: date | None) -> bool:
    """Whether `entered` is the patient's birth date; after a few misses the link is spent
    so it cannot be used to guess."""
    patient = link.appointment.patient
    if entered is not None and patient.birth_date == entered:
        return True
    links.count_birth_date_failure(link, spend_after=BIRTH_DATE_MAX_FAILURES)
    return False
