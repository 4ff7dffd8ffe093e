"""Acting on a patient's reply once consent keywords are ruled out.

`act_on_reply` reads the text (careline.conversations.understanding) in the light of what
Careline last asked that number, and acts only when the reading is sure:

- an open numbered question ("Reply 1 for Ana ..., 2 for Ben ..." or "1) Tue 9:00 ...")
  takes the number; "MORE" offers later times; "no thanks" keeps the visit;
- otherwise the reply is about the visits awaiting an answer (`visits_in_question`).
  Confirm confirms, cancel (only at or above ACT_THRESHOLD) cancels and says how to book
  again, reschedule texts the next open times. "Can't make it" without asking to cancel is
  answered "Reply R for other times, or X to cancel", never cancelled outright. When
  several visits await an answer and the reply does not say which, Careline asks "Which
  visit? 1) ... 2) ..." and takes a number, a day, a date or a name; "yes to both"
  confirms them all; a cancel never guesses;
- a waitlist offer's YES / NO is answered by the waitlist first (careline.waitlist registers
  its answer with `answer_waitlist_offers_with`).

Everything else, and anything from a number that opted out, goes to the staff inbox with the
reading stored on the message, so staff see why nothing was done.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from careline.conversations import texts
from careline.conversations.inbox import Handoff, continue_thread, pass_to_staff
from careline.conversations.keywords import ConsentMatch
from careline.conversations.models import (
    ChoiceKind,
    ChoiceState,
    InboundAction,
    InboundIntent,
    InboundMessage,
    NumberedChoice,
)
from careline.conversations.offers import (
    Outcome,
    answer,
    ask_cancel_or_move,
    ask_which_visit,
    book_time,
    close_choice,
    keep_visit,
    later_times,
    offer_times,
    open_choice,
    withdraw_planned_notice,
)
from careline.conversations.routing import fold_text, mentions_emergency, words_of
from careline.conversations.understanding import (
    CANCEL,
    CHOOSE_OPTION,
    CONFIRM,
    DECLINE,
    EXPECT_REMINDER,
    EXPECT_SLOT_CHOICE,
    EXPECT_WAITLIST_OFFER,
    HELP,
    MORE_OPTIONS,
    OPT_IN,
    OPT_OUT,
    RESCHEDULE,
    UNCLEAR,
    Interpretation,
    interpret_reply,
)
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.models import Patient, PhoneConsent
from careline.scheduling.appointments import InvalidTransition, change_status
from careline.scheduling.models import (
    UPCOMING_STATUSES,
    Appointment,
    AppointmentStatus,
    ChangeSource,
)

if TYPE_CHECKING:
    from careline.conversations.addressing import Route

log = logging.getLogger(__name__)

CONSENT_INTENTS = (OPT_OUT, OPT_IN, HELP)
# Texts that ask the patient to confirm, cancel or reschedule one visit.
ASKING_KINDS = (MessageKind.REMINDER, MessageKind.BOOKED, MessageKind.RESCHEDULED)
# A booking notice offers X and R, not C (the reminder that follows asks to confirm).
CONFIRM_ASKING_KINDS = (MessageKind.REMINDER, MessageKind.RESCHEDULED)
REACHED_STATES = (MessageState.SENT, MessageState.DELIVERED)
# More visits than this on one number are for a person to sort out, not a list by text.
MAX_VISITS_TO_ASK = 5
_EVERYONE = re.compile(
    r"\b(?:both|everyone|ambos|ambas|todos|todas|(?:los|las) dos)\b|(?<!\bat )\ball\b"
)
# A reply to "which visit?" that names them all and nothing else: "both", "las dos por favor".
_EVERYONE_ONLY = frozenset(
    """both all of them us the visits appointments please pls thanks thank you ok
    ambos ambas todos todas los las dos citas por favor gracias""".split()
)
# ... and, when the question was about confirming, "yes to both", "confirm all", "si a las dos".
_YES_TO_EVERYONE = _EVERYONE_ONLY | frozenset(
    "yes yeah yep y c to for confirm confirmed si a para confirmo confirmamos".split()
)
# "I can't make it": the patient is asked whether to move or cancel, never cancelled outright.
CANCEL_OR_MOVE = "cancel_or_move"
_WEEKDAYS = (
    ("mon", "monday", "lunes"),
    ("tue", "tues", "tuesday", "martes"),
    ("wed", "weds", "wednesday", "miercoles"),
    ("thu", "thur", "thurs", "thursday", "jueves"),
    ("fri", "friday", "viernes"),
    ("sat", "saturday", "sabado"),
    ("sun", "sunday", "domingo"),
)
_MONTHS = (
    ("jan", "january", "enero"),
    ("feb", "february", "febrero"),
    ("mar", "march", "marzo"),
    ("apr", "april", "abril"),
    ("may", "mayo"),
    ("jun", "june", "junio"),
    ("jul", "july", "julio"),
    ("aug", "august", "agosto"),
    ("sep", "sept", "september", "septiembre"),
    ("oct", "october", "octubre"),
    ("nov", "november", "noviembre"),
    ("dec", "december", "diciembre"),
)
# Titles in a provider's display name that say nothing about which provider it is.
_TITLES = frozenset("dr dra doctor doctora md do np pa rn dds".split())
_NOT = frozenset("not no dont nor neither isnt".split())


def act_on_reply(message: InboundMessage, route: Route) -> ConsentMatch | None:
    """Read a non-keyword reply and act on it, filling in the message's interpretation.

    Returns a ConsentMatch when the reply turns out to be an opt-out or help request in
    other words ("wrong number", "REMOVE"): the caller applies it like a keyword."""
    try:
        with transaction.atomic():
            return _act(message, route)
    except Exception as exc:  # noqa: BLE001 — the text must still reach a person
        log.error("Inbound message %s: acting on it failed (%s)", message.pk, type(exc).__name__)
        message.intent = message.intent or InboundIntent.UNCLEAR
        message.reply = None
        message.appointment = None
        message.note = "Careline could not act on this text automatically."
        pass_to_staff(message, None, _handoff(route, None, _language_hint(route.patients)))
        return None


def _act(message: InboundMessage, route: Route) -> ConsentMatch | None:
    now = timezone.now()
    org_id, phone = message.organization_id, message.from_phone
    hint = _language_hint(route.patients)
    choice = open_choice(org_id, phone, now)
    if choice is not None and _asked_since(choice):
        # A reminder that reached the number after the question is what a reply answers.
        close_choice(choice, ChoiceState.REPLACED, now)
        choice = None
    # "Reply R for other times, or X to cancel" asks in the reminder's own words.
    numbered = choice is not None and choice.kind != ChoiceKind.CANCEL_OR_MOVE
    reading = interpret_reply(
        message.body,
        language=hint,
        expecting=EXPECT_SLOT_CHOICE if numbered else EXPECT_REMINDER,
        option_count=len(choice.options) if numbered else 3,
    )
    _record(message, reading)
    if reading.intent in CONSENT_INTENTS and reading.should_act:
        return ConsentMatch(reading.intent, reading.language, "phrase", exact=False)

    if PhoneConsent.objects.filter(organization_id=org_id, phone=phone, opted_out=True).exists():
        handoff = _handoff(route, None, reading.language)
        handoff.opted_out = True
        _finish(
            message,
            reading,
            Outcome(InboundAction.TO_INBOX, to_staff=True, note="Number opted out of texts."),
            handoff,
        )
        return None

    handler = _waitlist_handler()
    if handler is not None:
        offer_reading = interpret_reply(
            message.body, language=hint, expecting=EXPECT_WAITLIST_OFFER
        )
        if not offer_reading.should_act:
            # A hedged yes is no yes: the waitlist must not take it as one.
            offer_reading = replace(offer_reading, intent=UNCLEAR, confidence=0.0)
        said = handler(org_id, phone, offer_reading)
        if said:
            _record(message, offer_reading)
            single = route.patients[0] if len(route.patients) == 1 else None
            message.action_taken = InboundAction.WAITLIST
            message.reply = answer(
                message,
                said,
                practice_id=route.practice.pk if route.practice else None,
                patient_id=single.pk if single else None,
            )
            return None

    if choice is not None:
        outcome = _answer_choice(message, choice, reading, now)
        if outcome is not None:
            _finish(
                message, reading, outcome, _handoff(route, outcome.appointment, reading.language)
            )
            return None

    outcome = _answer_about_visits(message, reading, now)
    _finish(message, reading, outcome, _handoff(route, outcome.appointment, reading.language))
    return None


def _asked_since(choice: NumberedChoice) -> bool:
    return OutboundMessage.objects.filter(
        organization_id=choice.organization_id,
        to_address=choice.phone,
        kind__in=ASKING_KINDS,
        state__in=REACHED_STATES,
        sent_at__gt=choice.created_at,
    ).exists()


# Answers a YES / NO to a waitlist offer still open on the number, or returns None when the
# reply is not about one. The waitlist is a layer above conversations: it registers this in
# its AppConfig.ready(), and without it replies are read as usual.
OfferAnswer = Callable[[int, str, Interpretation], str | None]
_waitlist_answer: OfferAnswer | None = None


def answer_waitlist_offers_with(answer: OfferAnswer) -> None:
    global _waitlist_answer
    _waitlist_answer = answer


def _waitlist_handler() -> OfferAnswer | None:
    return _waitlist_answer


def _record(message: InboundMessage, reading: Interpretation) -> None:
    message.intent = reading.intent
    message.confidence = reading.confidence
    message.note = reading.reason[:300]


def _finish(
    message: InboundMessage, reading: Interpretation, outcome: Outcome, handoff: Handoff
) -> None:
    message.action_taken = outcome.action
    message.reply = outcome.reply
    message.appointment = outcome.appointment
    if outcome.note:
        message.note = f"{reading.reason}. {outcome.note}"[:300]
    if outcome.to_staff:
        handoff.answered = outcome.reply is not None
        pass_to_staff(message, reading, handoff)
    else:
        # Answered by Careline, but a text in an ongoing (or closed) thread is still for
        # staff to see: nothing the patient writes there is swallowed.
        continue_thread(message, handoff)


def _language_hint(patients: list[Patient]) -> str | None:
    languages = {p.preferred_language for p in patients}
    return languages.pop() if len(languages) == 1 else None


def _handoff(route: Route, appointment: Appointment | None, language: str) -> Handoff:
    # On a number shared by a family, which of them wrote is for staff to find out.
    single = route.patients[0] if len(route.patients) == 1 else None
    if appointment is not None:
        return Handoff(
            practice=appointment.practice,
            patient=single if route.patients else appointment.patient,
            appointment=appointment,
            language=appointment.patient.preferred_language,
        )
    return Handoff(
        practice=route.practice,
        patient=single,
        language=single.preferred_language if single else language,
    )


# --- which visit ---------------------------------------------------------------------------


def _upcoming(now: datetime):
    return Appointment.objects.filter(status__in=UPCOMING_STATUSES, start__gt=now).select_related(
        "practice", "provider", "patient"
    )


def visits_in_question(
    organization_id: int, phone: str, now: datetime, *, confirming: bool = False
) -> list[Appointment]:
    """The visits a reply from `phone` may be about, the one last asked about first.

    That is the visit of the latest reminder or notice that reached the number and is still
    upcoming, with any other visit on the number the same day at the same practice (a
    family whose shared phone got one reminder for all), and any other visit still awaiting
    an answer to its own text — for a confirmation (`confirming`), a text that asked to
    confirm. With no such text, every upcoming visit of the patients with that number."""
    upcoming = _upcoming(now).filter(organization_id=organization_id)
    # A join, not IN (upcoming ids): the number's few texts first, then their visits.
    asked_id = (
        OutboundMessage.objects.filter(
            organization_id=organization_id,
            to_address=phone,
            kind__in=ASKING_KINDS,
            state__in=REACHED_STATES,
            appointment__status__in=UPCOMING_STATUSES,
            appointment__start__gt=now,
        )
        .order_by("-sent_at", "-id")
        .values_list("appointment_id", flat=True)
        .first()
    )
    on_number = upcoming.filter(patient__mobile_phone=phone).order_by("start", "id")
    if asked_id is None:
        return list(on_number[: MAX_VISITS_TO_ASK + 1])
    asked = upcoming.get(pk=asked_id)
    day = asked.start.astimezone(asked.practice.zone).date()
    same_day = [
        v
        for v in on_number.filter(practice_id=asked.practice_id)[: MAX_VISITS_TO_ASK + 1]
        if v.pk != asked.pk and v.start.astimezone(v.practice.zone).date() == day
    ]
    # Another visit, on another day, whose own reminder reached the number, still unconfirmed
    # and not answered since, is just as much awaiting this answer: the patient is asked which.
    last_asked = (
        OutboundMessage.objects.filter(
            appointment_id=OuterRef("pk"),
            to_address=phone,
            kind__in=CONFIRM_ASKING_KINDS if confirming else ASKING_KINDS,
            state__in=REACHED_STATES,
        )
        .order_by("-sent_at")
        .values("sent_at")[:1]
    )
    answered = InboundMessage.objects.filter(
        appointment_id=OuterRef("pk"), received_at__gt=OuterRef("last_asked")
    )
    seen = {asked.pk, *(v.pk for v in same_day)}
    awaiting = [
        v
        for v in on_number.filter(status=AppointmentStatus.BOOKED)
        .annotate(last_asked=Subquery(last_asked))
        .filter(last_asked__isnull=False)
        .exclude(Exists(answered))[: MAX_VISITS_TO_ASK + 1]
        if v.pk not in seen
    ]
    return [asked, *same_day, *awaiting]


def _named(visits: list[Appointment], body: str) -> list[Appointment]:
    """The visits of the one patient whose first name the reply mentions, if exactly one."""
    words = set(words_of(fold_text(body)).split())
    names = {fold_text(v.patient.given_name) for v in visits}
    mentioned = {n for n in names if len(n) > 2 and n in words}
    if len(mentioned) != 1:
        return []
    return [v for v in visits if fold_text(v.patient.given_name) in mentioned]


def _mentions_everyone(body: str) -> bool:
    return bool(_EVERYONE.search(words_of(fold_text(body))))


def _answer_about_visits(
    message: InboundMessage, reading: Interpretation, now: datetime
) -> Outcome:
    visits = visits_in_question(
        message.organization_id, message.from_phone, now, confirming=reading.action == CONFIRM
    )
    action = reading.action
    if reading.tentative and action in (CANCEL, UNCLEAR):
        action = CANCEL_OR_MOVE
    if action not in (CONFIRM, CANCEL, RESCHEDULE, CANCEL_OR_MOVE):
        return Outcome(
            InboundAction.TO_INBOX, appointment=visits[0] if visits else None, to_staff=True
        )
    if not visits:
        return Outcome(InboundAction.TO_INBOX, to_staff=True, note="No upcoming visit found.")
    if len(visits) > 1:
        # A name can be an ordinary word ("Will"): good enough to confirm or offer times,
        # never to pick whose visit to cancel.
        named = _named(visits, message.body) if action not in (CANCEL, CANCEL_OR_MOVE) else []
        if named:
            visits = named
        elif not (action in (CONFIRM, CANCEL) and _mentions_everyone(message.body)):
            if len(visits) > MAX_VISITS_TO_ASK:
                return Outcome(
                    InboundAction.TO_INBOX,
                    appointment=visits[0],
                    to_staff=True,
                    note="Too many visits on this number to ask which.",
                )
            return ask_which_visit(message, visits, action, _language(visits, reading))
    if action in (RESCHEDULE, CANCEL_OR_MOVE) and len(visits) > 1:
        return ask_which_visit(message, visits, action, _language(visits, reading))
    return _do(action, message, visits, reading)


def _language(visits: list[Appointment], reading: Interpretation) -> str:
    languages = {v.patient.preferred_language for v in visits}
    return languages.pop() if len(languages) == 1 else reading.language


def _do(
    intent: str, message: InboundMessage, visits: list[Appointment], reading: Interpretation
) -> Outcome:
    language = _language(visits, reading)
    if intent == CONFIRM:
        return _confirm(message, visits, language)
    if intent == CANCEL:
        return _cancel(message, visits, language)
    if intent == CANCEL_OR_MOVE:
        if reading.intent != UNCLEAR:
            return ask_cancel_or_move(message, visits[0], language)
        # A question about cancelling: answered with the choice, and a person sees it.
        outcome = ask_cancel_or_move(message, visits[0], language, wording="cancel_or_move_asked")
        outcome.to_staff = True
        return outcome
    return offer_times(message, visits[0], language)


def _change(visits: list[Appointment], status: str, message: InboundMessage) -> list[Appointment]:
    changed = []
    for visit in visits:
        try:
            changed.append(
                change_status(
                    visit,
                    status,
                    source=ChangeSource.PATIENT_TEXT,
                    note=f"Patient text (inbound message {message.pk})",
                )
            )
        except InvalidTransition:
            log.info(
                "Inbound message %s: appointment %s cannot become %s", message.pk, visit.pk, status
            )
    return changed


def _confirm(message: InboundMessage, visits: list[Appointment], language: str) -> Outcome:
    changed = _change(visits, AppointmentStatus.CONFIRMED, message)
    if not changed:
        return Outcome(
            InboundAction.TO_INBOX, appointment=visits[0], to_staff=True, note="Could not confirm."
        )
    return Outcome(
        InboundAction.CONFIRMED, _tell(message, changed, language, "confirmed"), changed[0]
    )


def _cancel(message: InboundMessage, visits: list[Appointment], language: str) -> Outcome:
    changed = _change(visits, AppointmentStatus.CANCELLED, message)
    if not changed:
        return Outcome(
            InboundAction.TO_INBOX, appointment=visits[0], to_staff=True, note="Could not cancel."
        )
    for visit in changed:
        withdraw_planned_notice(visit.pk, "cancelled")
    return Outcome(
        InboundAction.CANCELLED, _tell(message, changed, language, "cancelled"), changed[0]
    )


def _tell(
    message: InboundMessage, visits: list[Appointment], language: str, wording: str
) -> OutboundMessage:
    first = visits[0]
    practice = first.practice
    values = {"practice": practice.name}
    if wording == "cancelled":
        values["rebook"] = texts.rebook(practice, language)
    if len(visits) == 1:
        body = texts.text(
            language, wording, when=texts.when(first.start, practice, language), **values
        )
    else:
        body = texts.text(
            language, f"{wording}_many", visits=texts.visit_list(visits, language), **values
        )
    patients = {v.patient_id for v in visits}
    return answer(
        message,
        body,
        practice_id=practice.pk,
        patient_id=first.patient_id if len(patients) == 1 else None,
    )


# --- answers to a numbered question --------------------------------------------------------


def _answer_choice(
    message: InboundMessage, choice: NumberedChoice, reading: Interpretation, now: datetime
) -> Outcome | None:
    """What the reply does to the open question; None to read it afresh instead."""
    action = reading.action
    if choice.kind == ChoiceKind.SLOT:
        visit = _upcoming(now).filter(pk=choice.appointment_id).first()
        if visit is None:
            close_choice(choice, ChoiceState.REPLACED, now)
            return None
        language = visit.patient.preferred_language
        if action == CHOOSE_OPTION:
            return book_time(message, choice, reading.option, language)
        if action == MORE_OPTIONS:
            return later_times(message, choice, language)
        if action == DECLINE:
            return keep_visit(message, choice, language)
        if action == CANCEL:
            close_choice(choice, ChoiceState.ANSWERED, now)
            return _cancel(message, [visit], language)
        return Outcome(InboundAction.TO_INBOX, appointment=visit, to_staff=True)
    if choice.kind == ChoiceKind.CANCEL_OR_MOVE:
        return _answer_cancel_or_move(message, choice, reading, now)

    upcoming = {v.pk: v for v in _upcoming(now).filter(pk__in=choice.options)}
    visits = [upcoming.get(pk) for pk in choice.options]
    # "Going to the ER Friday" names a day, but it is no answer to the question.
    unclear = action == UNCLEAR and not mentions_emergency(message.body)
    described = _described(visits, message.body) if unclear else None
    if described is not None:
        close_choice(choice, ChoiceState.ANSWERED, now)
        return _do(choice.intent, message, [described], reading)
    if action == CHOOSE_OPTION:
        visit = visits[reading.option - 1]
        if visit is None:
            return Outcome(
                InboundAction.TO_INBOX,
                to_staff=True,
                note="The visit picked is no longer upcoming.",
            )
        close_choice(choice, ChoiceState.ANSWERED, now)
        return _do(choice.intent, message, [visit], reading)
    if action == CANCEL:
        close_choice(choice, ChoiceState.REPLACED, now)
        return None
    still = [v for v in visits if v is not None]
    if action == DECLINE and still:
        close_choice(choice, ChoiceState.DECLINED, now)
        practice = still[0].practice
        language = _language(still, reading)
        body = texts.text(language, "nothing_changed", practice=practice.name)
        return Outcome(
            InboundAction.KEPT, answer(message, body, practice_id=practice.pk, patient_id=None)
        )
    words = set(words_of(fold_text(message.body)).split())
    allowed = _YES_TO_EVERYONE if choice.intent == CONFIRM else _EVERYONE_ONLY
    if (
        choice.intent in (CONFIRM, CANCEL)
        and still
        and _mentions_everyone(message.body)
        and words <= allowed
    ):
        close_choice(choice, ChoiceState.ANSWERED, now)
        return _do(choice.intent, message, still, reading)
    return Outcome(InboundAction.TO_INBOX, appointment=still[0] if still else None, to_staff=True)


def _described(visits: list[Appointment | None], body: str) -> Appointment | None:
    """The one visit a reply to "which visit?" describes by its day ("Friday"), date
    ("Dec 11", "12/11", "11 de diciembre"), provider ("Dr Ruiz") or first name, or None.
    A negation ("not Tuesday") or a tie describes none: it goes to a person."""
    words = words_of(fold_text(body)).split()
    if not words or _NOT & set(words):
        return None
    text = f" {' '.join(words)} "
    scores: dict[int, int] = {}
    for visit in visits:
        if visit is None:
            continue
        local = visit.start.astimezone(visit.practice.zone)
        months = _MONTHS[local.month - 1]
        day = str(local.day)
        phrases = [
            *(f" {name} " for name in _WEEKDAYS[local.weekday()]),
            *(f" {month} {day} " for month in months),
            *(f" {month} {day}th " for month in months),
            *(f" {day} de {month} " for month in months),
            *(f" {day} {month} " for month in months),
            f" {local.month} {day} ",
        ]
        names = [
            w
            for w in words_of(fold_text(visit.provider.display_name)).split()
            if w not in _TITLES and len(w) > 2
        ]
        given = fold_text(visit.patient.given_name)
        if len(given) > 2:
            names.append(given)
        score = sum(p in text for p in phrases) + sum(f" {n} " in text for n in names)
        if score:
            scores[visit.pk] = score
    if not scores:
        return None
    best = max(scores.values())
    top = [pk for pk, score in scores.items() if score == best]
    if len(top) != 1:
        return None
    return next(v for v in visits if v is not None and v.pk == top[0])


def _answer_cancel_or_move(
    message: InboundMessage, choice: NumberedChoice, reading: Interpretation, now: datetime
) -> Outcome | None:
    """The answer to "Reply R for other times, or X to cancel"."""
    visit = _upcoming(now).filter(pk=choice.appointment_id).first()
    if visit is None:
        close_choice(choice, ChoiceState.REPLACED, now)
        return None
    language = visit.patient.preferred_language
    action = reading.action
    if action == CANCEL and not reading.tentative:
        close_choice(choice, ChoiceState.ANSWERED, now)
        return _cancel(message, [visit], language)
    if action == RESCHEDULE:
        close_choice(choice, ChoiceState.ANSWERED, now)
        return offer_times(message, visit, language)
    # "yes" (to which?), "can't make it" again, anything else: a person sorts it out.
    return Outcome(
        InboundAction.TO_INBOX,
        appointment=visit,
        to_staff=True,
        note="Asked to pick another time or cancel; the answer was neither.",
    )
