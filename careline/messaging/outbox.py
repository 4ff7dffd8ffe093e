"""The one writer of the outbox (OutboundMessage): every row is created, moved from state
to state and withdrawn here, and everyone else calls these functions.

A message moves scheduled → sending → sent → delivered | undelivered | failed, or from
scheduled to suppressed or cancelled; a sending row whose worker died goes back to
scheduled. Bulk paths stay set-based: planning and broadcasts hand over the SELECT that
chooses their rows (insert_planned, insert_broadcast, cancel_planned) and the worker writes
a whole batch in one statement (save_claims, mark_sent).

Every write that changes what FHIR Communication shows of a row (its state, body, sent
time, error) bumps the row's `version` and stamps `last_updated` in the same statement,
with one time per statement from `change_time` (careline.versions: the change clock the
Communication change feed relies on). A worker's lease and a due time put off are not
such a change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from careline.messaging import visit_links
from careline.messaging.gateways.base import SendResult, StatusUpdate
from careline.messaging.models import (
    Channel,
    MessageKind,
    MessageState,
    OutboundMessage,
    Priority,
)
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource, PhoneConsent
from careline.versions import change_stamp, change_stamp_for, stamp

logger = logging.getLogger(__name__)

OUTBOX = OutboundMessage._meta.db_table
# Every column of the outbox, in the order set-based inserts give their values: the one
# list planning and broadcasts write against (a test checks it names every column).
COLUMNS = (
    "organization_id",
    "practice_id",
    "patient_id",
    "appointment_id",
    "broadcast_id",
    "channel",
    "to_address",
    "sender",
    "body",
    "kind",
    "step_key",
    "visit_start",
    "stop_when_confirmed",
    "priority",
    "due_at",
    "expires_at",
    "state",
    "reason",
    "attempts",
    "next_attempt_at",
    "claimed_at",
    "provider_message_id",
    "error_code",
    "error_message",
    "segments",
    "created_at",
    "sent_at",
    "finished_at",
    "version",
    "last_updated",
)
_INSERT = f"INSERT INTO {OUTBOX} ({', '.join(COLUMNS)})"
# A step that already has a live message for this visit time is left alone by the
# unique constraint itself (one_message_per_appointment_step), not by a NOT EXISTS
# probe: in a first plan the outbox is empty when the statement is planned, so
# PostgreSQL picks a probe that only matches on step_key and then walks every row the
# statement has itself inserted (quadratic). It also makes two concurrent syncs of the
# same visit add one message, not fail. The condition is the index's own, word for
# word, as SQLite matches a partial index by the form of its WHERE.
_SKIP_LIVE = (
    " ON CONFLICT (appointment_id, step_key, visit_start) "
    "WHERE NOT (state = 'cancelled') AND appointment_id IS NOT NULL DO NOTHING"
)
# Fields the worker writes when it claims a batch (sending, deferred or suppressed).
CLAIM_FIELDS = [
    "state",
    "reason",
    "due_at",
    "finished_at",
    "claimed_at",
    "attempts",
    "body",
    "segments",
    "to_address",
    "sender",
]
SENT_FIELDS = ["state", "provider_message_id", "sent_at", "finished_at"]
_DATETIMES = {
    f
    for f in {*CLAIM_FIELDS, *SENT_FIELDS}
    if OutboundMessage._meta.get_field(f).get_internal_type() == "DateTimeField"
}
_quote = connection.ops.quote_name

# What a new or changed row's version becomes, in SQL (the outbox named: joined tables
# have versions of their own).
_NEXT_VERSION = f"{OUTBOX}.version + 1"

# Provider reports only move a message forward; terminal states never change again.
_PROGRESS = {
    MessageState.SCHEDULED: 0,
    MessageState.SENDING: 1,
    MessageState.SENT: 2,
    MessageState.DELIVERED: 3,
    MessageState.UNDELIVERED: 3,
    MessageState.FAILED: 3,
}
TERMINAL_STATES = (MessageState.DELIVERED, MessageState.UNDELIVERED, MessageState.FAILED)
# The planned notices of an appointment change, by step key.
NOTICE_STEPS = ("booked", "rescheduled", "cancelled")
# Twilio: "Attempt to send to unsubscribed recipient" — the carrier holds an opt-out.
OPTED_OUT_ERROR_CODES = {"21610"}
# An answer that could not go out within the hour is no longer an answer.
REPLY_EXPIRY = timedelta(hours=1)


def change_time(organization_ids: Iterable[int]) -> datetime:
    """The time to stamp a set-based change of these organizations' outbox rows with
    (planning, broadcasts): one per statement, inside the change's transaction. A SELECT
    handed to insert_planned or insert_broadcast gives it as its last_updated value."""
    return change_stamp_for(OutboundMessage, organization_ids)


def _update_stamped(rows: QuerySet, **values) -> int:
    """An UPDATE of `rows` (all of one visit, broadcast or message) that changes what FHIR
    shows of them: their versions bumped and one change time, in the same statement."""
    with transaction.atomic():
        organizations = rows.order_by().values_list("organization_id", flat=True).distinct()
        at = change_time(list(organizations))
        return rows.update(**values, version=F("version") + 1, last_updated=at)


def record_provider_opt_out(message: OutboundMessage, code: str) -> None:
    """The provider says this number opted out: put it in our ledger (once)."""
    if message.channel != Channel.SMS or not message.to_address:
        return
    already = PhoneConsent.objects.filter(
        organization_id=message.organization_id, phone=message.to_address, opted_out=True
    ).exists()
    if not already:
        record_consent(
            organization_id=message.organization_id,
            phone=message.to_address,
            opted_out=True,
            source=ConsentSource.PROVIDER_REPORT,
            detail=f"provider error {code} on message {message.pk}",
        )
        logger.info("Recorded provider opt-out for message %s", message.pk)


def apply_status_update(update: StatusUpdate) -> bool:
    """Apply a provider's delivery report. Idempotent and forward-only: reports may come
    twice and in any order, and a late "sent" never overwrites "delivered". Returns
    whether the message changed."""
    new_rank = _PROGRESS.get(update.state)
    if new_rank is None or new_rank < _PROGRESS[MessageState.SENT]:
        return False
    with transaction.atomic():
        message = (
            OutboundMessage.objects.select_for_update()
            .filter(provider_message_id=update.provider_message_id)
            .first()
        )
        if message is None:
            return False
        if update.error_code in OPTED_OUT_ERROR_CODES:
            record_provider_opt_out(message, update.error_code)
        if _PROGRESS.get(message.state, 99) >= new_rank:
            return False
        now = timezone.now()
        message.state = update.state
        message.sent_at = message.sent_at or now
        if update.error_code:
            message.error_code = update.error_code[:20]
        if update.state in TERMINAL_STATES:
            message.finished_at = now
        stamp(message)
        message.save(
            update_fields=[
                "state",
                "sent_at",
                "error_code",
                "finished_at",
                "version",
                "last_updated",
            ]
        )
    return True


def queue_reply(
    *,
    organization_id: int,
    to_phone: str,
    body: str,
    sender: str = "",
    patient_id: int | None = None,
    practice_id: int | None = None,
) -> OutboundMessage:
    """Queue an automatic answer to a patient's text; it goes ahead of everything else.

    A self-service link in `body` is stored redacted (visit_links): the worker sends a
    fresh link like it."""
    now = timezone.now()
    stored = visit_links.issuer().redact(body) if visit_links.registered() else body
    with transaction.atomic():
        message = OutboundMessage.objects.create(
            organization_id=organization_id,
            practice_id=practice_id,
            patient_id=patient_id,
            channel=Channel.SMS,
            to_address=to_phone,
            sender=sender,
            body=stored,
            kind=MessageKind.REPLY,
            priority=Priority.REPLY,
            due_at=now,
            expires_at=now + REPLY_EXPIRY,
            created_at=now,
            version=1,
            last_updated=change_stamp(OutboundMessage, organization_id),
        )
        if stored != body:
            visit_links.issuer().attach(body, message.pk)
    return message


# -- planned messages (set-based) ---------------------------------------------------


def _db_time(value: datetime | None):
    return connection.ops.adapt_datetimefield_value(value)


def insert_planned(select_sql: str, params: Sequence, *, with_sql: str = "") -> None:
    """Insert the planned messages `select_sql` chooses (a value per COLUMNS entry, in
    that order, version 1 and last_updated from `change_time`; `with_sql` is a WITH clause
    it reads from). A step that already has a live
    message for its visit time is skipped, so planning twice adds nothing. `params` are
    those of `with_sql`, then those of `select_sql`."""
    with connection.cursor() as cursor:
        cursor.execute(f"{with_sql} {_INSERT}{select_sql}{_SKIP_LIVE}", list(params))


def cancel_planned(
    *,
    where: str,
    where_params: Sequence,
    reason: str,
    reason_params: Sequence,
    now: datetime,
    changed_at: datetime,
    join: str = "",
    with_sql: str = "",
    with_params: Sequence = (),
) -> None:
    """Cancel, in one UPDATE, the scheduled messages `where` picks (SQL naming the outbox
    table itself, with tables from `join`, e.g. "FROM scheduling_appointment a"), for the
    `reason` SQL expression gives; `changed_at` is their change time (`change_time`)."""
    # SQLite, which has no statistics on fresh tables, would pick the state index and so
    # read every scheduled message for each planning chunk (quadratic in a bulk plan). A
    # unary plus on the column keeps it on the chunk's range of appointment ids.
    plain = "+" if connection.vendor == "sqlite" else ""
    sql = (
        f"{with_sql} UPDATE {OUTBOX} SET state = '{MessageState.CANCELLED}', "
        f"reason = {reason}, finished_at = %s, version = {_NEXT_VERSION}, last_updated = %s "
        f"{join} "
        f"WHERE {plain}{OUTBOX}.state = '{MessageState.SCHEDULED}' AND {where}"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [*with_params, *reason_params, _db_time(now), _db_time(changed_at), *where_params],
        )


def reschedule_planned(
    *,
    with_sql: str,
    with_params: Sequence,
    assignments: str,
    from_sql: str,
    where: str,
    where_params: Sequence,
    changed_at: datetime,
) -> None:
    """Rewrite, in one UPDATE … FROM, the scheduled messages `where` picks (SQL naming the
    outbox table itself and the tables of `from_sql`): `assignments` ("col = expr, …")
    gives their new due time, expiry and the like. A rule change moves planned reminders
    this way, in place; what was sent is never touched. `changed_at`: their change time
    (`change_time`)."""
    plain = "+" if connection.vendor == "sqlite" else ""
    sql = (
        f"{with_sql} UPDATE {OUTBOX} SET {assignments}, version = {_NEXT_VERSION}, "
        f"last_updated = %s {from_sql} "
        f"WHERE {plain}{OUTBOX}.state = '{MessageState.SCHEDULED}' AND {where}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*with_params, _db_time(changed_at), *where_params])


def withdraw_planned_notice(appointment_id: int, *step_keys: str) -> int:
    """The patient was just answered directly (a booking confirmed on the page, a visit
    moved or cancelled by text): the planned notice of the same change, which may wait
    for sending hours, would only repeat it. Cancels the scheduled notices of the given
    steps (of NOTICE_STEPS); returns how many."""
    unknown = set(step_keys) - set(NOTICE_STEPS)
    if unknown or not step_keys:
        raise ValueError(f"Not a notice step: {sorted(unknown) or 'none given'}")
    return _update_stamped(
        OutboundMessage.objects.filter(
            appointment_id=appointment_id, step_key__in=step_keys, state=MessageState.SCHEDULED
        ),
        state=MessageState.CANCELLED,
        reason="answered_directly",
        finished_at=timezone.now(),
    )


def withdraw_untold_move_notice(appointment_id: int, untold_start: datetime) -> int:
    """A move taken back minutes later (staff's undo): when no text about the visit at
    `untold_start` (the time taken back) ever left, the patient never heard of the move,
    so the planned notice of the way back is withdrawn too. Returns how many."""
    told = OutboundMessage.objects.filter(
        appointment_id=appointment_id,
        visit_start=untold_start,
        state__in=(MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED),
    ).exists()
    if told:
        return 0
    return withdraw_planned_notice(appointment_id, "rescheduled")


def texted_visits(appointment_ids: list[int]) -> set[int]:
    """The visits a text about their current time reached or is leaving for (the day
    view's "texted"): a visit moved since its last text is not texted yet."""
    return set(
        OutboundMessage.objects.filter(
            appointment_id__in=appointment_ids,
            visit_start=F("appointment__start"),
            state__in=(MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED),
        )
        .values_list("appointment_id", flat=True)
        .distinct()
    )


# -- broadcasts ---------------------------------------------------------------------


def insert_broadcast(select_sql: str, params: Sequence) -> int:
    """Queue a broadcast's messages, one per row `select_sql` gives (a value per COLUMNS
    entry, in that order, version 1 and last_updated from `change_time`), in one
    INSERT … SELECT; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(f"{_INSERT}{select_sql}", list(params))
        return cursor.rowcount


def cancel_broadcast_messages(broadcast_id: int) -> int:
    """Stop what of a broadcast has not gone out yet; what was sent stays sent."""
    return _update_stamped(
        OutboundMessage.objects.filter(broadcast_id=broadcast_id, state=MessageState.SCHEDULED),
        state=MessageState.CANCELLED,
        reason="broadcast_cancelled",
        finished_at=timezone.now(),
    )


# -- the worker ---------------------------------------------------------------------


def _update(
    rows: list[list],
    fields: list[str],
    *,
    if_state: str | None = None,
    changed_at: datetime | None = None,
) -> None:
    """Write `fields` of many outbox rows: each row is its field values, then its id; with
    `if_state`, only rows still in that state change; with `changed_at`, each row written
    is a new version changed then. On PostgreSQL one UPDATE … FROM unnest(arrays) — one
    short statement whatever the number of rows, parsed and planned once; on SQLite, which
    runs in-process, one prepared statement executed per row."""
    if not rows:
        return
    guard = f" AND {OUTBOX}.state = %s" if if_state else ""
    extra = [if_state] if if_state else []
    versioned = "" if changed_at is None else f", version = {_NEXT_VERSION}, last_updated = %s"
    at = [] if changed_at is None else [_db_time(changed_at)]
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            assignments = ", ".join(f"{_quote(f)} = %s" for f in fields)
            sql = f"UPDATE {OUTBOX} SET {assignments}{versioned} WHERE id = %s{guard}"
            cursor.executemany(sql, [row[:-1] + at + row[-1:] + extra for row in rows])
            return
        columns = [*fields, "id"]
        arrays = ", ".join(
            f"CAST(%s AS {OutboundMessage._meta.get_field(f).db_type(connection)}[])"
            for f in columns
        )
        assignments = ", ".join(f"{_quote(f)} = v.{_quote(f)}" for f in fields)
        cursor.execute(
            f"UPDATE {OUTBOX} SET {assignments}{versioned} "
            f"FROM unnest({arrays}) AS v({', '.join(_quote(f) for f in columns)}) "
            f"WHERE {OUTBOX}.id = v.id{guard}",
            at + [list(column) for column in zip(*rows, strict=True)] + extra,
        )


def lock_due(now: datetime, limit: int) -> list[OutboundMessage]:
    """The next scheduled rows that are due, locked until the caller's transaction ends
    (SKIP LOCKED on PostgreSQL, so workers share the load; SQLite has one writer at a
    time). The caller decides each row's fate and writes it with save_claims."""
    rows: list[OutboundMessage] = []
    # One priority at a time, each an ordered range of the (state, priority, due_at)
    # index: ordering by priority and due_at in one query made SQLite sort every due row
    # for every batch. Not by id as well: no index has it after due_at.
    for priority in sorted(Priority.values):
        if len(rows) >= limit:
            break
        rows += (
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(state=MessageState.SCHEDULED, priority=priority, due_at__lte=now)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("due_at")[: limit - len(rows)]
        )
    return rows


def save_claims(rows: list[OutboundMessage]) -> None:
    """Write what the worker decided for rows it locked: `sending` with the rendered body
    and its address, a later due time, or `suppressed` with the reason. Must run in the
    transaction that locked them. A row only put off (still scheduled) is not a new
    version: FHIR shows nothing of its due time."""

    def values(m: OutboundMessage) -> list:
        return [
            _db_time(getattr(m, f)) if f in _DATETIMES else getattr(m, f) for f in CLAIM_FIELDS
        ] + [m.pk]

    changed = [m for m in rows if m.state != MessageState.SCHEDULED]
    put_off = [m for m in rows if m.state == MessageState.SCHEDULED]
    _update(
        [values(m) for m in changed],
        CLAIM_FIELDS,
        changed_at=change_time(m.organization_id for m in changed) if changed else None,
    )
    _update([values(m) for m in put_off], CLAIM_FIELDS)


def mark_sent(sent: list[tuple[int, SendResult, datetime]]) -> None:
    """Record what the provider accepted, (message id, result, when) each, in one
    statement; a row that is no longer `sending` (another worker reconciled it after this
    one's lease ran out) keeps what it has."""
    rows = []
    for message_id, result, at in sent:
        at = _db_time(at)
        finished = at if result.state in TERMINAL_STATES else None
        rows.append([result.state, result.provider_message_id, at, finished, message_id])
    if not rows:
        return
    with transaction.atomic():
        organizations = (
            OutboundMessage.objects.filter(pk__in=[row[-1] for row in rows])
            .order_by()
            .values_list("organization_id", flat=True)
            .distinct()
        )
        _update(
            rows, SENT_FIELDS, if_state=MessageState.SENDING, changed_at=change_time(organizations)
        )


def retry_later(message_id: int, *, at: datetime, error_code: str, error_message: str) -> None:
    """A send that failed for now goes back to the queue, not before `at`."""
    _update_stamped(
        OutboundMessage.objects.filter(pk=message_id, state=MessageState.SENDING),
        state=MessageState.SCHEDULED,
        next_attempt_at=at,
        error_code=error_code[:20],
        error_message=error_message[:300],
    )


def mark_failed(message_id: int, *, at: datetime, error_code: str, error_message: str) -> None:
    """Failed means not sent: the provider refused it or never got it."""
    _update_stamped(
        OutboundMessage.objects.filter(pk=message_id, state=MessageState.SENDING),
        state=MessageState.FAILED,
        finished_at=at,
        error_code=error_code[:20],
        error_message=error_message[:300],
    )


def take_over_stuck(message: OutboundMessage, now: datetime) -> bool:
    """Take a row left in `sending` over from a dead worker (a new lease from `now`);
    of several reconcilers, only one wins."""
    return bool(
        OutboundMessage.objects.filter(
            pk=message.pk, state=MessageState.SENDING, claimed_at=message.claimed_at
        ).update(claimed_at=now)
    )


def requeue(message_id: int) -> None:
    """Nobody sent it: back to the queue, where it passes the gate again."""
    _update_stamped(
        OutboundMessage.objects.filter(pk=message_id, state=MessageState.SENDING),
        state=MessageState.SCHEDULED,
        claimed_at=None,
    )
