"""The staff inbox: conversations, queues, after-hours answers, and what staff do with them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.conversations import inbox
from careline.conversations.inbox import InboxError, parse_office_hours
from careline.conversations.models import (
    Conversation,
    ConversationNote,
    ConversationReply,
    ConversationState,
    InboundAction,
)
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import OutboundMessage, SimulatedPhoneMessage
from careline.scheduling.models import Holiday

from .conftest import ORG_NUMBER

CHICAGO_TUESDAY_10 = datetime(2026, 3, 3, 16, 0, tzinfo=UTC)  # 10:00 in Chicago


def test_a_question_opens_a_conversation_in_its_queue_and_practice(twoway):
    patient = twoway.patient()
    message = twoway.text(patient.mobile_phone, "Can you send a refill of my inhaler to CVS?")

    conversation = message.conversation
    assert message.action_taken == InboundAction.TO_INBOX
    assert conversation.queue == "refills"
    assert conversation.practice == twoway.practice and conversation.patient == patient
    assert conversation.state == ConversationState.OPEN
    assert conversation.unread_count == 1 and conversation.unread
    assert conversation.last_patient_message_at == message.received_at
    assert conversation.opened_at == message.received_at


def test_unknown_sender_on_a_shared_number_is_an_organization_wide_conversation(twoway, build):
    other = build.practice(twoway.org, name="Elm Clinic")
    elm_desk = build.staff(twoway.org, practices=[other])
    message = twoway.text(twoway.new_phone(), "what are your hours on saturday")

    conversation = message.conversation
    assert conversation.patient is None
    assert conversation.queue == "general"
    # Not tied to one practice: every practice of the organization sees it.
    assert Conversation.objects.visible_to(elm_desk).filter(pk=conversation.pk).exists()


def test_conversation_lifecycle(twoway, build):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    patient = twoway.patient()
    first = twoway.text(patient.mobile_phone, "is there parking at the clinic?")
    conversation = first.conversation

    conversation = inbox.assign(conversation, desk, by=desk)
    assert conversation.state == ConversationState.ASSIGNED and conversation.assigned_to == desk

    reply = inbox.staff_reply(conversation, desk, "Yes, free parking behind the building.")
    conversation.refresh_from_db()
    assert conversation.state == ConversationState.WAITING
    assert conversation.first_staff_reply_at == reply.message.created_at
    assert conversation.unread_count == 0
    assert reply.author == desk and reply.message.to_address == patient.mobile_phone
    assert reply.message.sender == ORG_NUMBER  # the number the patient wrote to

    second = twoway.text(patient.mobile_phone, "thanks! and is it free on weekends?")
    conversation.refresh_from_db()
    assert second.conversation == conversation
    assert conversation.state == ConversationState.ASSIGNED
    assert conversation.unread_count == 1

    inbox.staff_reply(conversation, desk, "It is.")
    conversation.refresh_from_db()
    first_reply_at = conversation.first_staff_reply_at
    assert first_reply_at == reply.message.created_at  # the first one is kept

    conversation = inbox.close(conversation, desk)
    assert conversation.state == ConversationState.CLOSED and conversation.closed_at

    third = twoway.text(patient.mobile_phone, "one more question about my bill")
    conversation.refresh_from_db()
    assert third.conversation == conversation
    assert conversation.state == ConversationState.ASSIGNED  # reopened, still theirs
    assert conversation.queue == "billing"  # a new topic is filed anew
    assert conversation.closed_at is None
    # Response time is measured from the reopening.
    assert conversation.opened_at == third.received_at
    assert conversation.first_staff_reply_at is None


def test_staff_reply_goes_through_the_outbox_to_the_phone(twoway, build):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    patient = twoway.patient()
    conversation = twoway.text(patient.mobile_phone, "do you take walk-ins?").conversation

    inbox.staff_reply(conversation, desk, "We do, from 8 to 10 every morning.")
    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()

    [on_phone] = SimulatedPhoneMessage.objects.filter(to=patient.mobile_phone)
    assert on_phone.body == "We do, from 8 to 10 every morning."
    assert ConversationReply.objects.get(conversation=conversation).author == desk


def test_a_note_is_never_texted(twoway, build):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    patient = twoway.patient()
    conversation = twoway.text(patient.mobile_phone, "do you take walk-ins?").conversation
    before = OutboundMessage.objects.count()

    note = inbox.add_note(conversation, desk, "Called her back, she is coming Friday.")

    assert ConversationNote.objects.get(conversation=conversation) == note
    assert OutboundMessage.objects.count() == before


def test_no_staff_text_to_an_opted_out_number(twoway, build):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    patient = twoway.patient()
    conversation = twoway.text(patient.mobile_phone, "do you take walk-ins?").conversation
    twoway.text(patient.mobile_phone, "STOP")
    before = OutboundMessage.objects.count()

    with pytest.raises(InboxError, match="opted out"):
        inbox.staff_reply(conversation, desk, "Yes we do")
    assert OutboundMessage.objects.count() == before


@pytest.mark.parametrize("body", ["", "   ", "x" * 1601])
def test_empty_or_overlong_replies_are_refused_clearly(twoway, build, body):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    conversation = twoway.text(twoway.patient().mobile_phone, "hello?").conversation
    with pytest.raises(InboxError):
        inbox.staff_reply(conversation, desk, body)


def test_staff_of_another_practice_cannot_act_on_a_conversation(twoway, build):
    other = build.practice(twoway.org, name="Elm Clinic")
    outsider = build.staff(twoway.org, practices=[other])
    conversation = twoway.text(twoway.patient().mobile_phone, "hello?").conversation

    assert not Conversation.objects.visible_to(outsider).filter(pk=conversation.pk).exists()
    for action in (
        lambda: inbox.staff_reply(conversation, outsider, "hi"),
        lambda: inbox.add_note(conversation, outsider, "note"),
        lambda: inbox.close(conversation, outsider),
        lambda: inbox.assign(conversation, outsider),
    ):
        with pytest.raises(InboxError):
            action()


def test_assign_to_a_queue_and_back(twoway, build):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    manager = build.staff(twoway.org, role=StaffRole.ORGANIZATION_ADMIN)
    conversation = twoway.text(twoway.patient().mobile_phone, "hello?").conversation
    inbox.assign(conversation, desk, by=manager)

    moved = inbox.assign(conversation, "billing", by=manager)

    assert (moved.queue, moved.assigned_to, moved.state) == ("billing", None, "open")
    with pytest.raises(InboxError, match="Unknown queue"):
        inbox.assign(conversation, "accounting", by=manager)


def test_reopen_and_mark_read(twoway, build):
    desk = build.staff(twoway.org, practices=[twoway.practice])
    conversation = twoway.text(twoway.patient().mobile_phone, "hello?").conversation
    assert inbox.mark_read(conversation, desk).unread_count == 0
    inbox.close(conversation, desk)
    assert inbox.reopen(conversation, desk).state == ConversationState.OPEN


def test_after_hours_the_patient_is_answered_once(twoway, settings):
    today = timezone.now().astimezone(twoway.practice.zone).weekday()
    closed_days = {(today + 3) % 7}  # the office is not open today or yesterday
    day_names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    settings.CARELINE_OFFICE_HOURS = f"{day_names[closed_days.pop()]} 08:00-18:00"
    patient = twoway.patient()

    first = twoway.text(patient.mobile_phone, "can I get a copy of my records?")
    twoway.text(patient.mobile_phone, "hello?")

    [answer] = twoway.replies_to(patient.mobile_phone)
    assert "office is closed" in answer and "911" in answer and "after 8:00 AM" in answer
    assert first.reply.body == answer
    conversation = first.conversation
    assert conversation.queue == "records"
    assert ConversationReply.objects.get(conversation=conversation).author is None

    # After the office has opened and closed again, the next text gets a new answer.
    Conversation.objects.update(after_hours_reply_at=timezone.now() - timedelta(days=8))
    twoway.text(patient.mobile_phone, "still there?")
    assert len(twoway.replies_to(patient.mobile_phone)) == 2


def test_emergency_words_get_the_911_text_at_any_hour(twoway):
    patient = twoway.patient()
    message = twoway.text(patient.mobile_phone, "my husband has chest pain and is sweating")

    [answer] = twoway.replies_to(patient.mobile_phone)
    assert "call 911" in answer
    assert message.conversation.urgent and message.conversation.queue == "clinical"


def test_office_hours_rules(build):
    practice = build.practice(time_zone="America/Chicago")
    hours = parse_office_hours("Mon-Fri 08:00-18:00")

    assert hours.is_open(CHICAGO_TUESDAY_10, practice)
    assert not hours.is_open(CHICAGO_TUESDAY_10 + timedelta(hours=8), practice)  # 18:00
    friday_night = CHICAGO_TUESDAY_10 + timedelta(days=3, hours=10)
    assert hours.next_opening(friday_night, practice) == datetime(
        2026, 3, 9, 8, 0, tzinfo=practice.zone
    )
    assert hours.last_closing(friday_night, practice) == datetime(
        2026, 3, 6, 18, 0, tzinfo=practice.zone
    )
    Holiday.objects.create(practice=practice, date=date(2026, 3, 3), name="Closed")
    assert not hours.is_open(CHICAGO_TUESDAY_10, practice)


def test_office_hours_that_wrap_the_week_and_midnight():
    hours = parse_office_hours("Sat-Mon 00:00-24:00")
    assert hours.weekdays == {5, 6, 0} and hours.closes is None


@pytest.mark.parametrize(
    "value", ["", "weekdays 8-6", "Mon-Fri 18:00-08:00", "Mon-Xyz 08:00-18:00", "Mon 25:00-26:00"]
)
def test_bad_office_hours_are_a_clear_configuration_error(value):
    with pytest.raises(ImproperlyConfigured, match="CARELINE_OFFICE_HOURS"):
        parse_office_hours(value)
