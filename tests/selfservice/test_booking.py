"""Online booking rules: bookable types, slots in local time, codes, matching, atomic booking."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.utils import timezone

from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.models import Patient
from careline.scheduling.appointments import SlotUnavailable, book_appointment
from careline.scheduling.models import ChangeSource
from careline.selfservice import booking, ratelimit
from careline.selfservice.links import resolve
from careline.selfservice.models import OneTimeCode
from tests.selfservice.conftest import texted_token

ADDRESS = "203.0.113.7"


def _last_code(phone: str) -> str:
    body = OutboundMessage.objects.filter(to_address=phone).latest("id").body
    return re.search(r"\b(\d{6})\b", body).group(1)


def test_only_types_the_practice_allows_online_are_offered(clinic, build):
    build.appointment_type(clinic.org, bookable_online=False, name="Procedure")
    other_org_type = build.appointment_type(build.organization(), bookable_online=True)
    assert list(booking.bookable_types(clinic.practice)) == [clinic.visit_type]
    with pytest.raises(booking.NotBookable):
        booking.bookable_type(clinic.practice, other_org_type.pk)


def test_slots_are_the_practice_local_day_from_nine(clinic):
    slots = booking.slots_on_day(clinic.practice, clinic.visit_type, None, clinic.monday)
    assert slots[0].start == clinic.at(clinic.monday, 9)
    assert slots[-1].start == clinic.at(clinic.monday, 16, 40)
    assert len(slots) == 24
    assert all(s.start.astimezone(clinic.practice.zone).date() == clinic.monday for s in slots)
    clinic.appointment(clinic.at(clinic.monday, 9))
    again = booking.slots_on_day(clinic.practice, clinic.visit_type, None, clinic.monday)
    assert again[0].start == clinic.at(clinic.monday, 9, 20)


def test_code_is_texted_and_only_its_hash_is_stored(clinic):
    row = booking.send_code(clinic.practice, "+15125550123", client_address=ADDRESS)
    text = OutboundMessage.objects.get(to_address="+15125550123")
    code = _last_code("+15125550123")
    assert text.kind == MessageKind.REPLY and clinic.practice.name in text.body
    assert code not in OneTimeCode.objects.get(pk=row.pk).code_hash
    booking.verify_code(row.pk, code, client_address=ADDRESS)
    with pytest.raises(booking.CodeRejected, match="already used"):
        booking.verify_code(row.pk, code, client_address=ADDRESS)


def test_wrong_codes_count_and_lock_the_code(clinic):
    row = booking.send_code(clinic.practice, "+15125550124", client_address=ADDRESS)
    code = _last_code("+15125550124")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        with pytest.raises(booking.CodeRejected, match=f"{left} tries left"):
            booking.verify_code(row.pk, wrong, client_address=ADDRESS)
    with pytest.raises(booking.CodeRejected, match="Too many"):
        booking.verify_code(row.pk, wrong, client_address=ADDRESS)
    with pytest.raises(booking.CodeRejected, match="Too many"):
        booking.verify_code(row.pk, code, client_address=ADDRESS)
    assert OneTimeCode.objects.get(pk=row.pk).failed_attempts == 5


def test_expired_code_is_refused(clinic):
    row = booking.send_code(clinic.practice, "+15125550125", client_address=ADDRESS)
    OneTimeCode.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(booking.CodeRejected, match="expired"):
        booking.verify_code(row.pk, _last_code("+15125550125"), client_address=ADDRESS)


def test_code_requests_are_limited_per_number_and_per_address(clinic):
    for _ in range(3):
        booking.send_code(clinic.practice, "+15125550126", client_address=ADDRESS)
    with pytest.raises(ratelimit.RateLimited) as caught:
        booking.send_code(clinic.practice, "+15125550126", client_address="198.51.100.1")
    assert 0 < caught.value.minutes <= 15
    assert OutboundMessage.objects.filter(to_address="+15125550126").count() == 3
    # Ten more numbers from one address: the address limit (10 per window) stops the last.
    sent = 3
    with pytest.raises(ratelimit.RateLimited):
        for n in range(10):
            booking.send_code(clinic.practice, f"+1512555020{n}", client_address=ADDRESS)
            sent += 1
    assert sent == 10


def test_rate_windows_are_shared_and_reset(clinic):
    limit = ratelimit.Limit("test", 2, timedelta(minutes=1))
    now = timezone.now().replace(second=5)
    ratelimit.hit(limit, "x", now=now)
    ratelimit.hit(limit, "x", now=now)
    with pytest.raises(ratelimit.RateLimited):
        ratelimit.hit(limit, "x", now=now)
    ratelimit.hit(limit, "y", now=now)
    ratelimit.hit(limit, "x", now=now + timedelta(minutes=1))


def _identity(**kw) -> booking.Identity:
    values = {
        "given_name": "maria",
        "family_name": "GARCIA",
        "birth_date": date(1980, 5, 17),
        "phone": "+15125550300",
        "language": "es",
    }
    values.update(kw)
    return booking.Identity(**values)


def test_returning_patient_is_matched_not_duplicated(clinic, build):
    existing = clinic.patient(given_name="Maria", family_name="Garcia", mobile_phone="+15125550300")
    assert booking.find_or_create_patient(clinic.practice, _identity()) == existing
    other_birthday = booking.find_or_create_patient(
        clinic.practice, _identity(birth_date=date(1981, 5, 17))
    )
    assert other_birthday != existing and other_birthday.preferred_language == "es"
    sibling = booking.find_or_create_patient(clinic.practice, _identity(given_name="Ana"))
    assert sibling not in (existing, other_birthday)
    elsewhere = build.practice(build.organization())
    assert booking.find_or_create_patient(elsewhere, _identity()).organization != clinic.org
    assert Patient.objects.filter(organization=clinic.org).count() == 3


def test_online_booking_books_and_texts_a_confirmation_now(clinic):
    patient = clinic.patient(mobile_phone="+15125550301")
    start = clinic.at(clinic.monday, 10)
    appointment = booking.book_online(
        clinic.practice,
        patient,
        clinic.visit_type,
        clinic.provider.pk,
        start,
        client_address=ADDRESS,
    )
    assert appointment.start == start and appointment.status_source == ChangeSource.ONLINE_BOOKING
    reply = OutboundMessage.objects.get(to_address="+15125550301", kind=MessageKind.REPLY)
    assert "Dr. Lee" in reply.body and "/a/[redacted]" in reply.body
    # The outbox keeps no working link; the patient's phone gets one.
    assert not re.search(r"/a/[A-Za-z0-9_-]{16}\b", reply.body)
    assert resolve(texted_token("+15125550301")).appointment_id == appointment.pk
    # The planned 'booked' notice would repeat it later; it is withdrawn.
    assert not OutboundMessage.objects.filter(
        appointment=appointment, step_key="booked", state=MessageState.SCHEDULED
    ).exists()


def test_a_slot_taken_meanwhile_is_refused(clinic):
    start = clinic.at(clinic.monday, 11)
    book_appointment(
        patient=clinic.patient(),
        provider=clinic.provider,
        practice=clinic.practice,
        appointment_type=clinic.visit_type,
        start=start,
    )
    with pytest.raises(SlotUnavailable):
        booking.book_online(
            clinic.practice,
            clinic.patient(),
            clinic.visit_type,
            clinic.provider.pk,
            start,
            client_address=ADDRESS,
        )


def test_types_not_bookable_online_cannot_be_booked(clinic, build):
    hidden = build.appointment_type(clinic.org, bookable_online=False)
    with pytest.raises(booking.NotBookable):
        booking.book_online(
            clinic.practice,
            clinic.patient(),
            hidden,
            clinic.provider.pk,
            clinic.at(clinic.monday, 9),
            client_address=ADDRESS,
        )
