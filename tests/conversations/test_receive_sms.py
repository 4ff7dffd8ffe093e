"""receive_sms: store the text, find whose it is, honor consent keywords, answer HELP."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection

from careline.conversations.inbound import receive_sms
from careline.conversations.models import InboundAction, InboundIntent, InboundMessage
from careline.messaging.models import MessageKind, OutboundMessage, Priority
from careline.patients.models import ConsentEvent, ConsentSource, PhoneConsent

PHONE = "+15125550142"
ORG_NUMBER = "+15125550100"
_sids = itertools.count(1)


@pytest.fixture
def clinic(build):
    org = build.organization(name="Hill Country Health", default_sender_number=ORG_NUMBER)
    practice = build.practice(org, name="Oak Clinic", phone="+15125550199")
    patient = build.patient(org, mobile_phone=PHONE, home_practice=practice)
    return org, practice, patient


def text(body: str, *, sid: str | None = None, to: str = ORG_NUMBER, from_: str = PHONE):
    return receive_sms(
        from_phone=from_,
        to_phone=to,
        body=body,
        provider_message_id=sid or f"SM{next(_sids):032d}",
    )


def consent(org) -> PhoneConsent | None:
    return PhoneConsent.objects.filter(organization=org, phone=PHONE).first()


def replies() -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(kind=MessageKind.REPLY).order_by("id"))


def test_text_is_stored_as_it_arrived_and_routed(clinic, settings):
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"  # no after-hours answer
    org, practice, patient = clinic
    message = text("Can I bring my son too?", sid="SMabc")

    stored = InboundMessage.objects.get(provider_message_id="SMabc")
    assert stored.pk == message.pk
    assert (stored.from_phone, stored.to_phone) == (PHONE, ORG_NUMBER)
    assert stored.body == "Can I bring my son too?"
    assert stored.received_at is not None
    assert stored.organization == org
    assert stored.practice == practice
    assert list(stored.patients.all()) == [patient]
    # Not a consent keyword nor a reply Careline acts on: read, and passed to staff.
    assert stored.intent == InboundIntent.UNCLEAR
    assert stored.action_taken == InboundAction.TO_INBOX
    assert stored.conversation is not None
    assert stored.interpreted_at is not None
    assert replies() == []
    assert consent(org) is None


def test_stop_opts_the_number_out_and_confirms_once(clinic):
    org, practice, patient = clinic
    message = text("Stop")

    state = consent(org)
    assert state.opted_out and state.source == ConsentSource.PATIENT_TEXT
    event = ConsentEvent.objects.get(organization=org, phone=PHONE)
    assert event.kind == ConsentEvent.Kind.OPT_OUT
    assert "STOP" in event.detail and str(message.pk) in event.detail
    [reply] = replies()
    assert reply.to_address == PHONE and reply.sender == ORG_NUMBER
    assert reply.priority == Priority.REPLY and reply.patient == patient
    assert "unsubscribed" in reply.body and "START" in reply.body
    assert reply.body.startswith("Oak Clinic:")
    assert message.intent == InboundIntent.OPT_OUT
    assert message.action_taken == InboundAction.OPTED_OUT
    assert message.reply == reply
    assert message.confidence == 1.0


@pytest.mark.parametrize(
    "body",
    ["STOP", "stopall", "Unsubscribe", "CANCEL", "end", "Quit", "REVOKE", "optout", "Opt Out",
     "stop texting me", "no more texts", "dejen de enviarme mensajes",
     "no me manden mensajes"],
)  # fmt: skip
def test_every_opt_out_keyword_and_phrase_opts_out(clinic, body):
    org, _, _ = clinic
    message = text(body)

    assert consent(org).opted_out
    assert message.intent == InboundIntent.OPT_OUT
    assert len(replies()) == 1


def test_spanish_request_is_confirmed_in_spanish(clinic):
    text("No me manden mensajes")
    [reply] = replies()
    assert "Se ha dado de baja" in reply.body


def test_same_message_sid_three_times_is_one_row_one_confirmation(clinic):
    org, _, _ = clinic
    for _ in range(3):
        text("STOP", sid="SMrepeat")

    assert InboundMessage.objects.filter(provider_message_id="SMrepeat").count() == 1
    assert ConsentEvent.objects.filter(organization=org, phone=PHONE).count() == 1
    assert len(replies()) == 1


def test_a_second_stop_sends_nothing_more(clinic):
    org, _, _ = clinic
    text("STOP")
    again = text("stop!!")

    assert len(replies()) == 1
    assert ConsentEvent.objects.filter(organization=org, phone=PHONE).count() == 1
    assert again.intent == InboundIntent.OPT_OUT
    assert again.action_taken == InboundAction.NONE
    assert consent(org).opted_out


def test_start_resubscribes(clinic):
    org, _, _ = clinic
    text("STOP")
    message = text("START")

    assert consent(org).opted_out is False
    assert message.intent == InboundIntent.OPT_IN
    assert message.action_taken == InboundAction.OPTED_IN
    kinds = list(
        ConsentEvent.objects.filter(organization=org, phone=PHONE)
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == [ConsentEvent.Kind.OPT_OUT, ConsentEvent.Kind.OPT_IN]
    assert "subscribed again" in replies()[-1].body


@pytest.mark.parametrize("body", ["UNSTOP", "alta"])
def test_other_explicit_opt_in_commands(clinic, body):
    org, _, _ = clinic
    text("STOP")
    text(body)
    assert consent(org).opted_out is False


@pytest.mark.parametrize("body", ["C", "yes", "Sí", "Thanks!", "Can I come at 3?", "👍"])
def test_a_later_ordinary_message_does_not_resubscribe(clinic, body):
    org, _, _ = clinic
    text("STOP")
    message = text(body)

    assert consent(org).opted_out
    assert message.intent not in (InboundIntent.OPT_IN, InboundIntent.OPT_OUT)
    assert message.action_taken == InboundAction.TO_INBOX
    assert len(replies()) == 1  # only the opt-out confirmation


def test_help_is_answered_while_opted_out(clinic):
    org, _, _ = clinic
    text("STOP")
    message = text("HELP")

    assert consent(org).opted_out
    reply = replies()[-1]
    assert message.intent == InboundIntent.HELP
    assert message.reply == reply
    assert reply.body.startswith("Oak Clinic:")
    assert "(512) 555-0199" in reply.body
    assert "Msg & data rates may apply" in reply.body
    assert "Reply STOP to opt out" in reply.body


def test_info_is_help_and_ayuda_is_answered_in_spanish(clinic):
    text("info")
    text("AYUDA")
    english, spanish = replies()
    assert "Msg & data rates may apply" in english.body
    assert "Pueden aplicarse tarifas" in spanish.body and "STOP" in spanish.body


def test_help_without_a_practice_phone_still_answers(build):
    org = build.organization(name="Solo Org", default_sender_number=ORG_NUMBER)
    build.practice(org, name="No Phone Clinic", phone="")
    text("HELP")
    [reply] = replies()
    assert "Msg & data rates may apply" in reply.body
    assert "call your clinic" in reply.body


def test_practice_number_routes_to_that_practice(build):
    org = build.organization(default_sender_number=ORG_NUMBER)
    build.practice(org, name="North")
    south = build.practice(org, name="South", sender_number="+15125550177")
    message = text("hello", to="+15125550177")
    assert message.organization == org
    assert message.practice == south


def test_shared_family_number_matches_every_patient(clinic, build):
    org, _, patient = clinic
    sibling = build.patient(org, mobile_phone=PHONE)
    build.patient(org, mobile_phone="+15125550143")
    message = text("who is this for?")
    assert set(message.patients.all()) == {patient, sibling}


def test_text_to_an_unknown_number_is_kept_and_marked(clinic):
    org, _, _ = clinic
    message = text("STOP", to="+15125550000")

    assert message.intent == InboundIntent.UNKNOWN_NUMBER
    assert message.organization is None
    assert InboundMessage.objects.filter(pk=message.pk).exists()
    assert consent(org) is None
    assert replies() == []


def test_opt_out_covers_every_organization_texting_from_that_number(clinic, build):
    org, _, _ = clinic
    other = build.organization(default_sender_number=ORG_NUMBER)
    message = text("STOP")

    assert consent(org).opted_out
    assert PhoneConsent.objects.get(organization=other, phone=PHONE).opted_out
    # The patient's own organization owns the message; one confirmation only.
    assert message.organization == org
    assert len(replies()) == 1


def test_missing_message_id_is_refused_with_a_clear_error(clinic):
    with pytest.raises(ValueError, match="message id"):
        receive_sms(from_phone=PHONE, to_phone=ORG_NUMBER, body="hi", provider_message_id="")


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_stop_act_once():
    """Twilio may deliver the same webhook again while the first is still being handled."""
    from careline.clinics.models import Organization

    org = Organization.objects.create(
        name="Race Org", slug="race-org", default_sender_number=ORG_NUMBER
    )
    barrier = threading.Barrier(4)
    errors = []

    def deliver():
        try:
            barrier.wait()
            text("STOP", sid="SMrace")
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert InboundMessage.objects.filter(provider_message_id="SMrace").count() == 1
    assert ConsentEvent.objects.filter(organization=org, phone=PHONE).count() == 1
    assert len(replies()) == 1
