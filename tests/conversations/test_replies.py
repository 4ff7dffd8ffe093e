"""Acting on replies end to end: reminder sent by the worker, answer through the signed webhook."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from careline.conversations import replies, texts
from careline.conversations.inbound import receive_sms
from careline.conversations.models import (
    ChoiceKind,
    ChoiceState,
    Conversation,
    InboundAction,
    InboundIntent,
    InboundMessage,
    NumberedChoice,
)
from careline.conversations.understanding import ACT_THRESHOLD
from careline.messaging.models import (
    MessageKind,
    MessageState,
    MessageTemplate,
    OutboundMessage,
)
from careline.patients.models import Language, PhoneConsent
from careline.scheduling.appointments import book_appointment, find_open_slots
from careline.scheduling.models import (
    AppointmentEvent,
    AppointmentStatus,
    BlockedPeriod,
    ChangeSource,
)

from .conftest import ORG_NUMBER, run_worker_at


def reminded(twoway, **patient):
    """A patient with a visit in two days whose day-before reminder reached their phone."""
    patient = twoway.patient(**patient)
    visit = twoway.visit(patient)
    assert twoway.send_reminders(visit), "the reminder should have gone out"
    return patient, visit


def offered_starts(phone: str) -> list[datetime]:
    choice = NumberedChoice.objects.get(phone=phone, state=ChoiceState.OPEN)
    assert choice.kind == ChoiceKind.SLOT
    return [datetime.fromisoformat(o["start"]) for o in choice.options]


def test_c_confirms_the_visit_the_reminder_asked_about(twoway):
    patient, visit = reminded(twoway)
    message = twoway.text(patient.mobile_phone, "C")

    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED
    event = AppointmentEvent.objects.filter(appointment=visit).latest("id")
    assert event.source == ChangeSource.PATIENT_TEXT
    assert (message.intent, message.action_taken) == (
        InboundIntent.CONFIRM,
        InboundAction.CONFIRMED,
    )
    assert message.appointment == visit and message.confidence >= ACT_THRESHOLD
    [reply] = twoway.replies_to(patient.mobile_phone)
    assert reply.startswith("Oak Clinic:") and "confirmed" in reply
    assert "10:00 AM" in reply  # the practice's local time, not UTC
    assert message.conversation is None  # nothing for staff to do
    # No more reminders for a confirmed visit.
    assert not OutboundMessage.objects.filter(
        appointment=visit, kind=MessageKind.REMINDER, state=MessageState.SCHEDULED
    ).exists()


def test_spanish_patient_is_answered_in_spanish(twoway):
    patient, visit = reminded(twoway, preferred_language=Language.SPANISH)
    twoway.text(patient.mobile_phone, "Sí, allí estaré")

    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED
    [reply] = twoway.replies_to(patient.mobile_phone)
    assert "confirmada" in reply and "10:00 a.m." in reply


def test_x_cancels_frees_the_slot_and_says_how_to_rebook(twoway):
    patient, visit = reminded(twoway)
    message = twoway.text(patient.mobile_phone, "X")

    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED
    assert visit.status_source == ChangeSource.PATIENT_TEXT
    assert message.action_taken == InboundAction.CANCELLED
    [reply] = twoway.replies_to(patient.mobile_phone)
    assert "cancelled" in reply and "(512) 555-0199" in reply
    assert texts.booking_page(twoway.practice) in reply  # the booking page, where served
    # The time is open again for others.
    free = find_open_slots(
        practice=twoway.practice,
        duration_minutes=20,
        after=visit.start,
        providers=[twoway.provider],
        count=1,
    )
    assert free[0].start == visit.start
    # The patient was answered directly: no second, planned cancellation notice.
    assert not OutboundMessage.objects.filter(
        appointment=visit, step_key="cancelled", state=MessageState.SCHEDULED
    ).exists()


@pytest.mark.parametrize(
    "body",
    ["yes but can I come at 3?", "no", "don't cancel, I'll be late", "cancel please", "Cancer?"],
)
def test_ambiguous_replies_change_nothing_and_go_to_the_inbox(twoway, body):
    patient, visit = reminded(twoway)
    message = twoway.text(patient.mobile_phone, body)

    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    assert visit.start == twoway.local(2, 10)
    assert message.action_taken == InboundAction.TO_INBOX
    assert message.note  # the reason, for staff
    assert message.confidence is not None and message.confidence < ACT_THRESHOLD
    conversation = message.conversation
    assert conversation.practice == twoway.practice and conversation.patient == patient
    assert conversation.queue == "scheduling" and conversation.unread_count == 1
    assert twoway.replies_to(patient.mobile_phone) == []  # office open: staff will answer
    assert not PhoneConsent.objects.filter(phone=patient.mobile_phone).exists()


def test_r_offers_three_times_and_2_moves_the_visit(twoway):
    patient, visit = reminded(twoway)
    old_start = visit.start
    # Dr. Lee is away until day 4, so the new time is far enough out to get reminders.
    BlockedPeriod.objects.create(
        practice=twoway.practice, provider=twoway.provider, start=timezone.now(),
        end=twoway.local(4, 0),
    )  # fmt: skip
    offer = twoway.text(patient.mobile_phone, "R")

    assert offer.action_taken == InboundAction.OFFERED_TIMES
    starts = offered_starts(patient.mobile_phone)
    assert starts == [twoway.local(4, 9), twoway.local(4, 9, 20), twoway.local(4, 9, 40)]
    [text] = twoway.replies_to(patient.mobile_phone)
    assert "Dr. Lee" in text and "1)" in text and "3)" in text and "MORE" in text
    assert "2) " in text and "9:20 AM" in text

    picked = twoway.text(patient.mobile_phone, "2")

    visit.refresh_from_db()
    assert visit.start == starts[1]
    assert visit.end - visit.start == timedelta(minutes=20)
    assert picked.action_taken == InboundAction.RESCHEDULED
    event = AppointmentEvent.objects.filter(appointment=visit).latest("id")
    assert (event.old_start, event.new_start) == (old_start, starts[1])
    assert event.source == ChangeSource.PATIENT_TEXT
    # Reminders follow the visit; the old time's plan is cancelled.
    live = OutboundMessage.objects.filter(
        appointment=visit, kind=MessageKind.REMINDER, state=MessageState.SCHEDULED
    )
    assert live.exists() and all(m.visit_start == starts[1] for m in live)
    assert not OutboundMessage.objects.filter(
        appointment=visit, step_key="rescheduled", state=MessageState.SCHEDULED
    ).exists()
    assert "now on" in twoway.replies_to(patient.mobile_phone)[-1]
    assert NumberedChoice.objects.get(asked_by=offer).state == ChoiceState.ANSWERED
    # The old time is free for someone else.
    BlockedPeriod.objects.all().delete()
    assert (
        find_open_slots(
            practice=twoway.practice,
            duration_minutes=20,
            after=old_start,
            providers=[twoway.provider],
            count=1,
        )[0].start
        == old_start
    )


def test_more_offers_later_times(twoway):
    patient, visit = reminded(twoway)
    twoway.text(patient.mobile_phone, "R")
    first = offered_starts(patient.mobile_phone)

    more = twoway.text(patient.mobile_phone, "more")

    later = offered_starts(patient.mobile_phone)
    assert more.action_taken == InboundAction.OFFERED_TIMES
    assert len(later) == 3 and min(later) > max(first)
    assert "Later open times" in twoway.replies_to(patient.mobile_phone)[-1]
    twoway.text(patient.mobile_phone, "1")
    visit.refresh_from_db()
    assert visit.start == later[0]


def test_a_time_taken_meanwhile_gets_an_apology_and_fresh_options(twoway):
    patient, visit = reminded(twoway)
    twoway.text(patient.mobile_phone, "R")
    starts = offered_starts(patient.mobile_phone)
    book_appointment(
        patient=twoway.patient(),
        provider=twoway.provider,
        practice=twoway.practice,
        appointment_type=twoway.visit_type,
        start=starts[1],
    )

    message = twoway.text(patient.mobile_phone, "2")

    visit.refresh_from_db()
    assert visit.start == twoway.local(2, 10)  # not moved
    assert message.action_taken == InboundAction.OFFERED_TIMES
    assert "Sorry, that time was just taken" in twoway.replies_to(patient.mobile_phone)[-1]
    fresh = offered_starts(patient.mobile_phone)
    assert starts[1] not in fresh and len(fresh) == 3
    twoway.text(patient.mobile_phone, "2")
    visit.refresh_from_db()
    assert visit.start == fresh[1]


def test_no_thanks_keeps_the_visit(twoway):
    patient, visit = reminded(twoway)
    twoway.text(patient.mobile_phone, "R")
    message = twoway.text(patient.mobile_phone, "no thanks I'll keep my original time")

    visit.refresh_from_db()
    assert visit.start == twoway.local(2, 10)
    assert message.action_taken == InboundAction.KEPT
    assert "stays" in twoway.replies_to(patient.mobile_phone)[-1]
    assert not NumberedChoice.objects.filter(state=ChoiceState.OPEN).exists()


def test_an_expired_offer_is_ignored_and_the_reply_read_afresh(twoway):
    patient, visit = reminded(twoway)
    twoway.text(patient.mobile_phone, "R")
    NumberedChoice.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    message = twoway.text(patient.mobile_phone, "2")

    visit.refresh_from_db()
    assert visit.start == twoway.local(2, 10)
    assert message.action_taken == InboundAction.TO_INBOX


def test_a_reminder_sent_after_an_offer_is_what_the_next_reply_answers(twoway):
    patient, first = reminded(twoway)
    twoway.text(patient.mobile_phone, "R")
    second = twoway.visit(patient, twoway.local(5, 11))
    twoway.send_reminders(second)

    twoway.text(patient.mobile_phone, "C")

    first.refresh_from_db()
    second.refresh_from_db()
    assert second.status == AppointmentStatus.CONFIRMED
    assert (first.status, first.start) == (AppointmentStatus.BOOKED, twoway.local(2, 10))
    assert NumberedChoice.objects.get().state == ChoiceState.REPLACED


def test_no_open_time_tells_the_patient_and_the_staff(twoway, build):
    patient, visit = reminded(twoway)
    visit.provider.working_hours.all().delete()

    message = twoway.text(patient.mobile_phone, "R")

    assert "Someone from our office will contact you" in twoway.replies_to(patient.mobile_phone)[0]
    assert message.action_taken == InboundAction.TO_INBOX
    assert message.conversation.queue == "scheduling"


def test_a_family_number_is_asked_which_visit(twoway):
    phone = twoway.new_phone()
    ana = twoway.patient(phone, given_name="Ana")
    ben = twoway.patient(phone, given_name="Ben")
    ana_visit = twoway.visit(ana, twoway.local(2, 9))
    ben_visit = twoway.visit(ben, twoway.local(2, 9, 20))
    twoway.send_reminders(ana_visit)  # Ben's same-day reminder is folded into Ana's

    question = twoway.text(phone, "C")

    assert question.action_taken == InboundAction.ASKED_WHICH
    [asked] = twoway.replies_to(phone)
    assert "1) Ana" in asked and "9:00 AM" in asked
    assert "2) Ben" in asked and "9:20 AM" in asked and asked.endswith("reply 1 or 2.")
    ana_visit.refresh_from_db()
    ben_visit.refresh_from_db()
    assert ana_visit.status == ben_visit.status == AppointmentStatus.BOOKED

    twoway.text(phone, "2")

    ana_visit.refresh_from_db()
    ben_visit.refresh_from_db()
    assert ben_visit.status == AppointmentStatus.CONFIRMED
    assert ana_visit.status == AppointmentStatus.BOOKED


@pytest.mark.parametrize(
    ("body", "confirmed"),
    [("Yes for both", {"Ana", "Ben"}), ("Ben will be there", {"Ben"})],
)
def test_a_family_reply_that_says_who_needs_no_question(twoway, body, confirmed):
    phone = twoway.new_phone()
    visits = [
        twoway.visit(twoway.patient(phone, given_name="Ana"), twoway.local(2, 9)),
        twoway.visit(twoway.patient(phone, given_name="Ben"), twoway.local(2, 9, 20)),
    ]
    twoway.send_reminders(visits[0])

    twoway.text(phone, body)

    status = {v.patient.given_name: v.status for v in visits if v.refresh_from_db() is None}
    assert {n for n, s in status.items() if s == AppointmentStatus.CONFIRMED} == confirmed


@pytest.mark.parametrize("body", ["Will can't make it", "I can't make it at all"])
def test_a_family_cancel_is_never_aimed_by_a_name_or_a_loose_all(twoway, body):
    phone = twoway.new_phone()
    visits = [
        twoway.visit(twoway.patient(phone, given_name="Ana"), twoway.local(2, 9)),
        twoway.visit(twoway.patient(phone, given_name="Will"), twoway.local(2, 9, 20)),
    ]
    twoway.send_reminders(visits[0])

    message = twoway.text(phone, body)

    assert message.action_taken == InboundAction.ASKED_WHICH
    for visit in visits:
        visit.refresh_from_db()
        assert visit.status == AppointmentStatus.BOOKED


def test_cancel_for_a_family_asks_which_then_cancels_only_that_one(twoway):
    phone = twoway.new_phone()
    ana_visit = twoway.visit(twoway.patient(phone, given_name="Ana"), twoway.local(2, 9))
    ben_visit = twoway.visit(twoway.patient(phone, given_name="Ben"), twoway.local(2, 9, 20))
    twoway.send_reminders(ana_visit)

    twoway.text(phone, "X")
    twoway.text(phone, "1")

    ana_visit.refresh_from_db()
    ben_visit.refresh_from_db()
    assert ana_visit.status == AppointmentStatus.CANCELLED
    assert ben_visit.status == AppointmentStatus.BOOKED


def test_the_reply_is_about_the_visit_the_last_reminder_asked_about(twoway):
    patient = twoway.patient()
    later = twoway.visit(patient, twoway.local(9, 11))
    sooner = twoway.visit(patient, twoway.local(2, 10))
    twoway.send_reminders(sooner)

    twoway.text(patient.mobile_phone, "yes")

    sooner.refresh_from_db()
    later.refresh_from_db()
    assert sooner.status == AppointmentStatus.CONFIRMED
    assert later.status == AppointmentStatus.BOOKED


def test_a_booking_notice_is_not_a_question_a_yes_could_answer(twoway):
    """Both visits' booking notices reached the number (they offer X and R, not C); only
    the sooner one's reminder asked to confirm: "yes" confirms it, "X" asks which."""
    patient = twoway.patient()
    later = twoway.visit(patient, twoway.local(9, 11))
    sooner = twoway.visit(patient, twoway.local(2, 10))
    run_worker_at(timezone.now() + timedelta(minutes=1))  # the booking notices leave
    assert OutboundMessage.objects.filter(
        appointment=later, kind=MessageKind.BOOKED, state__in=replies.REACHED_STATES
    ).exists()
    twoway.send_reminders(sooner)

    twoway.text(patient.mobile_phone, "yes")
    sooner.refresh_from_db()
    later.refresh_from_db()
    assert (sooner.status, later.status) == (AppointmentStatus.CONFIRMED, AppointmentStatus.BOOKED)

    message = twoway.text(patient.mobile_phone, "X")
    assert message.action_taken == InboundAction.ASKED_WHICH
    later.refresh_from_db()
    assert later.status == AppointmentStatus.BOOKED


def test_a_confirmation_without_any_upcoming_visit_goes_to_staff(twoway):
    patient = twoway.patient()
    message = twoway.text(patient.mobile_phone, "C")
    assert message.action_taken == InboundAction.TO_INBOX
    assert message.conversation is not None


def test_replaying_a_webhook_three_times_changes_nothing_after_the_first(twoway):
    patient, visit = reminded(twoway)
    for _ in range(3):
        twoway.text(patient.mobile_phone, "R", sid="SMreplay-r")
    assert NumberedChoice.objects.filter(phone=patient.mobile_phone).count() == 1
    starts = offered_starts(patient.mobile_phone)

    for _ in range(3):
        twoway.text(patient.mobile_phone, "2", sid="SMreplay-2")
    for _ in range(3):
        twoway.text(patient.mobile_phone, "X", sid="SMreplay-x")

    visit.refresh_from_db()
    assert visit.start == starts[1]
    assert visit.status == AppointmentStatus.CANCELLED
    events = AppointmentEvent.objects.filter(appointment=visit, source=ChangeSource.PATIENT_TEXT)
    assert events.count() == 2  # one move, one cancellation
    assert len(twoway.replies_to(patient.mobile_phone)) == 3  # offer, moved, cancelled


def test_an_opted_out_number_is_not_acted_on_or_texted(twoway):
    patient, visit = reminded(twoway)
    twoway.text(patient.mobile_phone, "STOP")
    message = twoway.text(patient.mobile_phone, "C")

    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    assert message.action_taken == InboundAction.TO_INBOX
    assert len(twoway.replies_to(patient.mobile_phone)) == 1  # the opt-out confirmation


def test_an_opt_out_in_other_words_is_honored(twoway):
    patient, visit = reminded(twoway)
    message = twoway.text(patient.mobile_phone, "wrong number")

    assert PhoneConsent.objects.get(organization=twoway.org, phone=patient.mobile_phone).opted_out
    assert message.intent == InboundIntent.OPT_OUT
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    [reply] = twoway.replies_to(patient.mobile_phone)
    assert "unsubscribed" in reply


def test_an_open_waitlist_offer_answers_first(twoway, monkeypatch):
    patient, visit = reminded(twoway)
    seen = []

    def handle_reply(organization_id, phone, interpretation):
        seen.append((organization_id, phone, interpretation.intent))
        return "Oak Clinic: the 2:40 PM slot is yours." if interpretation.should_act else None

    monkeypatch.setattr(replies, "_waitlist_handler", lambda: handle_reply)
    message = twoway.text(patient.mobile_phone, "YES")

    assert seen == [(twoway.org.pk, patient.mobile_phone, "confirm")]
    assert message.action_taken == InboundAction.WAITLIST
    assert twoway.replies_to(patient.mobile_phone) == ["Oak Clinic: the 2:40 PM slot is yours."]
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED  # the YES was for the offer


def test_a_hedged_yes_reaches_the_waitlist_as_unclear(twoway, monkeypatch):
    patient, visit = reminded(twoway)
    seen = []
    monkeypatch.setattr(replies, "_waitlist_handler", lambda: lambda o, p, i: seen.append(i.intent))
    twoway.text(patient.mobile_phone, "yes but I need a ride, can I let you know in an hour")
    assert seen == ["unclear"]
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED


def test_a_failure_while_acting_still_reaches_staff(twoway, monkeypatch):
    patient, visit = reminded(twoway)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(replies, "change_status", broken)
    message = twoway.text(patient.mobile_phone, "C")

    assert message.action_taken == InboundAction.TO_INBOX
    assert message.conversation is not None
    assert "could not act" in message.note
    assert twoway.replies_to(patient.mobile_phone) == []
    assert Conversation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_picks_at_once_move_the_visit_once(twoway):
    """Two texts answering the same offer at the same moment: one books, one is read afresh."""
    # An earlier transactional test's flush may have taken the default templates with it.
    MessageTemplate.objects.get_or_create(
        organization=None, kind=MessageKind.REMINDER, language=Language.ENGLISH,
        defaults={"body": "{first_name}: visit on {date} at {time}. Reply C, X or R."},
    )  # fmt: skip
    patient, visit = reminded(twoway)
    twoway.text(patient.mobile_phone, "R")
    starts = offered_starts(patient.mobile_phone)
    barrier = threading.Barrier(2)
    errors = []

    def pick(body: str) -> None:
        try:
            barrier.wait()
            receive_sms(
                from_phone=patient.mobile_phone,
                to_phone=ORG_NUMBER,
                body=body,
                provider_message_id=f"SMpick{body}",
            )
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pick, args=(body,)) for body in ("2", "3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    visit.refresh_from_db()
    assert visit.start in (starts[1], starts[2])
    moves = AppointmentEvent.objects.filter(appointment=visit, note="rescheduled")
    assert moves.count() == 1
    actions = sorted(
        InboundMessage.objects.filter(body__in=["2", "3"]).values_list("action_taken", flat=True)
    )
    assert actions == [InboundAction.RESCHEDULED, InboundAction.TO_INBOX]
