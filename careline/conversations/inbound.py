"""Receiving a patient's text: store it first, act on consent keywords, then on the reply.

Two halves, one table. `store_sms` appends the text as it arrived (one INSERT … ON
CONFLICT (provider_message_id) DO NOTHING, so a retried webhook changes nothing); the
Twilio webhook calls only that and acknowledges once the row is committed, so a burst
of replies costs the web server one small write each. `interpret_waiting` (run by
`careline worker`) then reads the stored texts in arrival order and acts on each exactly
once: consent keywords, then the reply. `receive_sms` does both at once, for the
simulator's patient phones.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from careline.clinics.models import Practice
from careline.clinics.validators import display_phone
from careline.conversations import texts
from careline.conversations.addressing import Route, route_inbound
from careline.conversations.inbox import Handoff, continue_thread, flag_for_staff
from careline.conversations.keywords import ConsentMatch, consent_keyword
from careline.conversations.models import InboundAction, InboundIntent, InboundMessage
from careline.conversations.replies import act_on_reply, visits_in_question
from careline.messaging.models import OutboundMessage
from careline.messaging.outbox import queue_reply
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource, Language, PhoneConsent
from careline.scheduling.models import Appointment
from careline.versions import change_stamp

log = logging.getLogger(__name__)


class InboundBusy(Exception):
    """The database could not take the text within the wait allowed (its write lock is
    held, or the server is overloaded): the caller refuses it so the sender retries."""


_INBOX = InboundMessage._meta.db_table
# One statement in autocommit: committed when execute returns. A retried webhook (the same
# MessageSid) finds the unique index and changes nothing.
_APPEND = (
    f"INSERT INTO {_INBOX} (provider_message_id, from_phone, to_phone, body, received_at, "
    "intent, action_taken, note) VALUES (%s, %s, %s, %s, %s, '', '', '') "
    "ON CONFLICT (provider_message_id) DO NOTHING"
)
# While another writer holds SQLite's lock, a waiting webhook polls this often: SQLite's
# own busy handler backs off to 25-100 ms sleeps and keeps missing the short gaps
# between the worker's transactions.
_SQLITE_POLL_SECONDS = 0.0005
_SQLITE_WORKER_PAUSE_SECONDS = 0.002


def store_sms(
    from_phone: str,
    to_phone: str,
    body: str,
    provider_message_id: str,
    received_at: datetime | None = None,
    *,
    wait_seconds: float | None = None,
) -> None:
    """Append one text to the inbound table, once per provider_message_id, uninterpreted.

    Committed when it returns (outside a transaction), so acknowledging the sender
    afterwards cannot lose it. With `wait_seconds`, a write that cannot get the database's
    lock within that time raises InboundBusy instead of queueing behind another writer.
    """
    _check(from_phone, to_phone, provider_message_id)
    params = [
        provider_message_id,
        from_phone.strip(),
        to_phone.strip(),
        body or "",
        connection.ops.adapt_datetimefield_value(received_at or timezone.now()),
    ]
    if wait_seconds is None:
        with connection.cursor() as cursor:
            cursor.execute(_APPEND, params)
    elif connection.vendor == "sqlite":
        _append_polling(params, wait_seconds)
    else:
        _append_within(params, wait_seconds)


def _append_polling(params: list, wait_seconds: float) -> None:
    """SQLite: try without SQLite's busy wait, and poll every half millisecond until the
    lock is free or `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    # Python's sqlite3 turns the connection's `timeout` option into SQLite's busy timeout.
    usual_ms = int(connection.settings_dict["OPTIONS"].get("timeout", 5.0) * 1000)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    cursor.execute(_APPEND, params)
                    return
                except OperationalError as error:
                    if not _locked(error):
                        raise
                    if time.monotonic() >= deadline:
                        raise InboundBusy() from error
                time.sleep(_SQLITE_POLL_SECONDS)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {usual_ms}")


def _append_within(params: list, wait_seconds: float) -> None:
    """PostgreSQL: the insert waits for a row lock (the same MessageSid being inserted by a
    concurrent delivery) at most `wait_seconds`."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = {max(1, int(wait_seconds * 1000))}")
        try:
            cursor.execute(_APPEND, params)
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
                raise InboundBusy() from error
            raise
        finally:
            if not connection.in_atomic_block:  # an aborted transaction takes no command
                cursor.execute("RESET lock_timeout")


def _locked(error: OperationalError) -> bool:
    return "database is locked" in str(error) or "database table is locked" in str(error)


def _check(from_phone: str, to_phone: str, provider_message_id: str) -> None:
    if not provider_message_id:
        raise ValueError("An inbound text needs the provider's message id.")
    if not from_phone or not to_phone:
        raise ValueError("An inbound text needs both the sender's and the recipient's number.")


UNREADABLE_NOTE = "Careline could not read this text automatically (error logged)."


def interpret_waiting(limit: int = 200) -> int:
    """Interpret up to `limit` stored texts not read yet, oldest first; returns how many.

    Texts are read in arrival order (workers running this at once queue on each text's
    row lock, oldest first), so a patient's "1" follows the question it answers. A text
    whose interpretation fails on anything but a lost database is marked read with a note
    (the error is logged by id) rather than holding up the ones after it.
    """
    waiting = list(
        InboundMessage.objects.filter(interpreted_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    held = 0.0
    for message_id in waiting:
        if connection.vendor == "sqlite":
            # SQLite has one writer, and this pass holds it while it reads a text: pausing
            # as long as the last text took leaves the webhooks at least half the time to
            # store theirs during a burst, instead of waiting out the whole backlog.
            time.sleep(max(_SQLITE_WORKER_PAUSE_SECONDS, held))
        started = time.monotonic()
        try:
            _interpret(message_id)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the harness waits and the text is read later
        except Exception:
            log.exception("Inbound message %s could not be interpreted", message_id)
            InboundMessage.objects.filter(pk=message_id, interpreted_at__isnull=True).update(
                intent=InboundIntent.UNCLEAR,
                action_taken=InboundAction.NONE,
                note=UNREADABLE_NOTE,
                interpreted_at=timezone.now(),
            )
        held = time.monotonic() - started
    return len(waiting)


def receive_sms(
    from_phone: str,
    to_phone: str,
    body: str,
    provider_message_id: str,
    received_at: datetime | None = None,
) -> InboundMessage:
    """Store one text from a patient, then interpret it; returns the stored message.

    Calling it again with the same provider_message_id returns the same row and does
    nothing more (unless the first call stopped before interpreting it).
    """
    _check(from_phone, to_phone, provider_message_id)
    message, created = InboundMessage.objects.get_or_create(
        provider_message_id=provider_message_id,
        defaults={
            "from_phone": from_phone.strip(),
            "to_phone": to_phone.strip(),
            "body": body or "",
            "received_at": received_at or timezone.now(),
        },
    )
    if not created:
        log.info("Inbound message %s received again; already stored", message.pk)
    if message.interpreted_at is None:
        _interpret(message.pk)
        message.refresh_from_db()
    return message


def _interpret(message_id: int) -> None:
    with transaction.atomic():
        # The lock makes concurrent retries of one webhook act once.
        message = InboundMessage.objects.select_for_update().get(pk=message_id)
        if message.interpreted_at is not None:
            return
        route = route_inbound(message.to_phone, message.from_phone)
        message.organization = route.organization
        message.practice = route.practice
        message.action_taken = InboundAction.NONE
        if route.organization is None:
            message.intent = InboundIntent.UNKNOWN_NUMBER
            message.note = "No practice or organization texts from the number this was sent to."
            log.warning("Inbound message %s was sent to a number no one uses", message.pk)
        else:
            message.patients.set(route.patients)
            match = consent_keyword(message.body)
            if match is None:
                # Reply understanding may still find an opt-out in other words.
                match = act_on_reply(message, route)
            if match is not None:
                _act_on_consent(message, route, match)
        message.interpreted_at = timezone.now()
        if message.organization_id is not None:
            # Read, the text becomes its organization's Communication: its first version
            # (nothing writes it again), stamped by the change clock FHIR polls.
            message.version = 1
            message.last_updated = change_stamp(InboundMessage, message.organization_id)
        message.save()
    log.info("Inbound message %s interpreted as %s", message.pk, message.intent)


def _act_on_consent(message: InboundMessage, route: Route, match: ConsentMatch) -> None:
    _answer_consent(message, route, match)
    if message.conversation_id is None:
        # A STOP or HELP in the middle of a thread with staff is for them to see too.
        single = route.patients[0] if len(route.patients) == 1 else None
        continue_thread(
            message,
            Handoff(
                practice=route.practice,
                patient=single,
                language=_reply_language(match, route),
                answered=True,
            ),
        )


def _answer_consent(message: InboundMessage, route: Route, match: ConsentMatch) -> None:
    message.confidence = 1.0 if match.exact else 0.9
    language = _reply_language(match, route)
    if match.intent == "help":
        message.intent = InboundIntent.HELP
        message.action_taken = InboundAction.ANSWERED_HELP
        message.reply = _queue_reply(message, route, _help_text(route, language))
        return
    opting_out = match.intent == "opt_out"
    message.intent = InboundIntent.OPT_OUT if opting_out else InboundIntent.OPT_IN
    detail = (
        f"Texted {match.matched}" if match.matched != "phrase" else "Asked to stop in other words"
    )
    changed = []
    for org_id in route.organization_ids:
        current = (
            PhoneConsent.objects.filter(organization_id=org_id, phone=message.from_phone)
            .values_list("opted_out", flat=True)
            .first()
        )
        # Only a change is recorded and confirmed: "one confirmation, nothing after it".
        if current != opting_out:
            record_consent(
                organization_id=org_id,
                phone=message.from_phone,
                opted_out=opting_out,
                source=ConsentSource.PATIENT_TEXT,
                detail=f"{detail} (inbound message {message.pk})",
                at=message.received_at,
            )
            changed.append(org_id)
    if not changed:
        message.note = "Already opted out." if opting_out else "Already subscribed."
        return
    message.action_taken = InboundAction.OPTED_OUT if opting_out else InboundAction.OPTED_IN
    if len(changed) > 1:
        message.note = f"Applied to {len(changed)} organizations texting from this number."
    name = route.practice.name if route.practice else route.organization.name
    if opting_out and match.matched == "CANCEL":
        # CANCEL is an opt-out word (FCC revocation), but the patient most likely meant the
        # visit: the one confirmation says it is still booked and how to cancel it, and staff
        # get the text to follow up.
        visits = visits_in_question(message.organization_id, message.from_phone, timezone.now())
        if visits:
            message.reply = _queue_reply(message, route, _still_booked(visits, language, name))
            first = visits[0]
            single = route.patients[0] if len(route.patients) == 1 else None
            flag_for_staff(
                message,
                Handoff(
                    practice=first.practice,
                    patient=single or (first.patient if not route.patients else None),
                    appointment=first,
                    language=language,
                    answered=True,
                    opted_out=True,
                ),
                "Replied CANCEL to a reminder — visit still booked. Texts are now off: "
                "call the patient to ask whether to cancel the visit.",
            )
            return
    message.reply = _queue_reply(message, route, texts.text(language, match.intent, name=name))


def _still_booked(visits: list[Appointment], language: str, name: str) -> str:
    first = visits[0]
    how = texts.how_to_cancel(first.practice, language)
    if len(visits) == 1:
        when = texts.when(first.start, first.practice, language)
        return texts.text(language, "opt_out_visit_kept", name=name, when=when, how=how)
    listed = texts.visit_list(visits, language)
    return texts.text(language, "opt_out_visits_kept", name=name, visits=listed, how=how)


def _reply_language(match: ConsentMatch, route: Route) -> str:
    if match.language == Language.SPANISH:
        return Language.SPANISH
    if route.patients and all(p.preferred_language == Language.SPANISH for p in route.patients):
        return Language.SPANISH
    return Language.ENGLISH


def _help_text(route: Route, language: str) -> str:
    practice = route.practice
    if practice is None or not practice.phone:
        practice = (
            Practice.objects.filter(organization=route.organization).exclude(phone="").first()
            or practice
        )
    name = practice.name if practice else route.organization.name
    contact = (
        texts.text(language, "help_call", phone=display_phone(practice.phone))
        if practice and practice.phone
        else texts.text(language, "help_no_phone")
    )
    return texts.text(language, "help", name=name, contact=contact)


def _queue_reply(message: InboundMessage, route: Route, text: str) -> OutboundMessage:
    """Answer through the outbox, from the number the patient texted. Replies reach
    opted-out numbers (the opt-out confirmation itself, HELP) and ignore quiet hours."""
    reply = queue_reply(
        organization_id=route.organization.pk,
        to_phone=message.from_phone,
        body=text,
        sender=message.to_phone,
        patient_id=route.patients[0].pk if len(route.patients) == 1 else None,
        practice_id=route.practice.pk if route.practice else None,
    )
    log.info("Inbound message %s answered with outbound message %s", message.pk, reply.pk)
    return reply


def asked_to_move(appointment_ids: list[int]) -> set[int]:
    """The visits whose patient asked, since the visit last changed, to move them ("R",
    "can't make it"): the day view shows them to the front desk to call back."""
    return set(
        InboundMessage.objects.filter(appointment_id__in=appointment_ids)
        .filter(
            Q(intent__in=(InboundIntent.RESCHEDULE, InboundIntent.MORE_OPTIONS))
            | Q(action_taken=InboundAction.ASKED_CANCEL_OR_MOVE)
        )
        .filter(received_at__gte=F("appointment__status_changed_at"))
        .values_list("appointment_id", flat=True)
        .distinct()
    )
