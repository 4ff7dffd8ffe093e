"""Online booking rules: what may be booked, proving the mobile number, matching patients."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from careline.clinics.models import AppointmentType, Practice, Provider
from careline.clinics.validators import parse_id
from careline.patients.models import Patient
from careline.patients.records import create_patient
from careline.scheduling.appointments import (
    Slot,
    SlotUnavailable,
    book_appointment,
    find_open_slots,
)
from careline.scheduling.models import Appointment, ChangeSource
from careline.selfservice import links, ratelimit, texts
from careline.selfservice.models import OneTimeCode

logger = logging.getLogger(__name__)

CODE_LIFETIME = timedelta(minutes=10)
CODE_MAX_FAILURES = 5
# How far ahead the booking page lets a patient look.
BOOKING_HORIZON_DAYS = 90
MAX_SLOTS_PER_DAY = 200


class CodeRejected(Exception):
    """The code is wrong, expired, already used or tried too often; the message says which."""


class NotBookable(Exception):
    """The chosen visit type, provider or time is not offered online at this practice."""


@dataclass(frozen=True)
class Identity:
    """Who the booker says they are; the mobile number is normalized (E.164)."""

    given_name: str
    family_name: str
    birth_date: date
    phone: str
    language: str = "en"


def bookable_types(practice: Practice):
    return AppointmentType.objects.filter(
        organization_id=practice.organization_id, bookable_online=True
    ).order_by("patient_facing_name")


def bookable_providers(practice: Practice):
    return practice.providers.filter(active=True).order_by("display_name")


def bookable_type(practice: Practice, type_id: int | str | None) -> AppointmentType:
    found = bookable_types(practice).filter(pk=_int(type_id)).first()
    if found is None:
        raise NotBookable(_("Choose a visit type that can be booked online."))
    return found


def bookable_provider(practice: Practice, provider_id: int | str | None) -> Provider | None:
    """The chosen provider, or None for "first available"."""
    if provider_id in (None, "", "any"):
        return None
    found = bookable_providers(practice).filter(pk=_int(provider_id)).first()
    if found is None:
        raise NotBookable(_("Choose a provider of this practice."))
    return found


def _int(value) -> int:
    number = parse_id(value)
    return -1 if number is None else number


def check_patient_choice(practice: Practice, start: datetime) -> None:
    """A patient books or moves to times the pages offer: from now to the booking horizon
    (a tampered form could otherwise pick any time the schedule leaves open)."""
    now = timezone.now()
    if start <= now:
        raise SlotUnavailable(_("That time has passed."))
    last_day = (now.astimezone(practice.zone) + timedelta(BOOKING_HORIZON_DAYS)).date()
    if start.astimezone(practice.zone).date() > last_day:
        raise SlotUnavailable(_("That time is not available."))


def slots_on_day(
    practice: Practice,
    appointment_type: AppointmentType,
    provider: Provider | None,
    day: date,
    *,
    now: datetime | None = None,
) -> list[Slot]:
    """Open slots on one local day of the practice, from now on."""
    now = now or timezone.now()
    day_start = datetime.combine(day, time.min, tzinfo=practice.zone)
    if day_start.date() > (now.astimezone(practice.zone) + timedelta(BOOKING_HORIZON_DAYS)).date():
        return []
    slots = find_open_slots(
        practice=practice,
        duration_minutes=appointment_type.duration_minutes,
        after=max(now, day_start),
        providers=[provider] if provider else None,
        count=MAX_SLOTS_PER_DAY,
        horizon_days=1,
    )
    return [s for s in slots if s.start.astimezone(practice.zone).date() == day]


def next_slots(
    practice: Practice,
    appointment_type: AppointmentType,
    provider: Provider | None,
    *,
    after: datetime,
    count: int = 3,
) -> list[Slot]:
    return find_open_slots(
        practice=practice,
        duration_minutes=appointment_type.duration_minutes,
        after=after,
        providers=[provider] if provider else None,
        count=count,
    )


def _code_hash(code_id: int, code: str) -> str:
    return hmac.new(
        settings.SECRET_KEY.encode(), f"{code_id}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def send_code(
    practice: Practice, phone: str, *, client_address: str, language: str = "en"
) -> OneTimeCode:
    """Text a 6-digit code to `phone`; RateLimited when the number or address asked too often."""
    ratelimit.check(
        [
            (ratelimit.CODE_PER_NUMBER, phone),
            (ratelimit.CODE_PER_NUMBER_DAY, phone),
            (ratelimit.CODE_PER_ADDRESS, client_address),
        ]
    )
    code = f"{secrets.randbelow(10**6):06d}"
    now = timezone.now()
    with transaction.atomic():
        row = OneTimeCode.objects.create(
            practice=practice, code_hash="", created_at=now, expires_at=now + CODE_LIFETIME
        )
        row.code_hash = _code_hash(row.pk, code)
        row.save(update_fields=["code_hash"])
        texts.send_code(practice=practice, phone=phone, code=code, language=language)
    logger.info("Sent booking code %s for practice %s", row.pk, practice.pk)
    return row


def verify_code(code_id: int, entered: str, *, client_address: str) -> None:
    """Accept the code once; CodeRejected otherwise. Failures count even when rejected."""
    ratelimit.hit(ratelimit.CODE_CHECKS_PER_ADDRESS, client_address)
    entered = "".join(ch for ch in entered or "" if ch.isdigit())
    now = timezone.now()
    problem = ""
    with transaction.atomic():
        row = OneTimeCode.objects.select_for_update().filter(pk=code_id).first()
        if row is None or row.used_at is not None:
            problem = _("That code was already used. Ask for a new one.")
        elif row.expires_at <= now:
            problem = _("That code has expired. Ask for a new one.")
        elif row.failed_attempts >= CODE_MAX_FAILURES:
            problem = _("Too many wrong tries. Ask for a new code.")
        elif not hmac.compare_digest(row.code_hash, _code_hash(row.pk, entered)):
            # Saved before raising (outside this block) so the miss is counted.
            row.failed_attempts += 1
            row.save(update_fields=["failed_attempts"])
            left = CODE_MAX_FAILURES - row.failed_attempts
            problem = (
                _("That code is not right. %(left)s tries left.") % {"left": left}
                if left > 0
                else _("Too many wrong tries. Ask for a new code.")
            )
        else:
            row.used_at = now
            row.save(update_fields=["used_at"])
    if problem:
        raise CodeRejected(problem)


def find_or_create_patient(practice: Practice, identity: Identity) -> Patient:
    """The organization's patient with this birth date, mobile number and name (any case),
    or a new one: a returning patient is never duplicated."""
    match = (
        Patient.objects.filter(
            organization_id=practice.organization_id,
            birth_date=identity.birth_date,
            mobile_phone=identity.phone,
            given_name__iexact=identity.given_name.strip(),
            family_name__iexact=identity.family_name.strip(),
        )
        .order_by("id")
        .first()
    )
    if match is not None:
        return match
    patient = create_patient(
        organization_id=practice.organization_id,
        home_practice=practice,
        given_name=identity.given_name.strip(),
        family_name=identity.family_name.strip(),
        birth_date=identity.birth_date,
        mobile_phone=identity.phone,
        preferred_language=identity.language,
    )
    logger.info("Online booking created patient %s", patient.pk)
    return patient


def book_online(
    practice: Practice,
    patient: Patient,
    appointment_type: AppointmentType,
    provider_id: int,
    start: datetime,
    *,
    client_address: str,
) -> Appointment:
    """Book the chosen slot atomically, then text the confirmation with a manage link.
    Raises SlotUnavailable (show the next slots), NotBookable or RateLimited."""
    if not appointment_type.bookable_online or (
        appointment_type.organization_id != practice.organization_id
    ):
        raise NotBookable(_("Choose a visit type that can be booked online."))
    provider = bookable_provider(practice, provider_id)
    if provider is None:
        raise NotBookable(_("Choose a provider of this practice."))
    check_patient_choice(practice, start)
    ratelimit.check(
        [
            (ratelimit.BOOKINGS_PER_NUMBER, patient.mobile_phone),
            (ratelimit.BOOKINGS_PER_ADDRESS, client_address),
        ]
    )
    with transaction.atomic():
        appointment = book_appointment(
            patient=patient,
            provider=provider,
            practice=practice,
            appointment_type=appointment_type,
            start=start,
            source=ChangeSource.ONLINE_BOOKING,
        )
        texts.confirm_booking(appointment, links.manage_link_url(appointment.pk))
    logger.info("Online booking %s at practice %s", appointment.pk, practice.pk)
    return appointment
