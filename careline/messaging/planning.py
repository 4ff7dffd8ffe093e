"""Keeping planned messages in step with appointments, set-based.

Every statement here is one `INSERT … SELECT` or `UPDATE … WHERE` over a chunk of
appointments, so planning a million visits is a handful of statements per chunk and never
a Python loop over rows. Rules are few; they travel into the SQL as a VALUES list, and the
most specific matching rule of each appointment is picked in SQL. A rule change
(replan_for_rule) is not chunked: at most four statements over every visit the rule
covers, in the transaction that saved the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from careline.messaging import experiments
from careline.messaging.models import (
    DEFAULT_OFFSETS_MINUTES,
    ExperimentAssignment,
    MessageKind,
    MessageState,
    OutboundMessage,
    PatientAssignment,
    Priority,
    ReminderRule,
)
from careline.messaging.outbox import (
    OUTBOX,
    cancel_planned,
    change_time,
    insert_planned,
    reschedule_planned,
)
from careline.scheduling.models import UPCOMING_STATUSES, Appointment, AppointmentStatus
from careline.tablestats import refresh_statistics

APPOINTMENT = Appointment._meta.db_table

# A booking or cancellation notice is news only shortly after it happened; older changes
# (a first import of an EHR's calendar) plan reminders but announce nothing.
EVENT_NEWS_WINDOW = timedelta(days=1)
EVENT_EXPIRY = timedelta(days=1)
SYNC_CHUNK = 500
# The step key of the extra touch for a high-risk visit (careline.messaging.touches).
EXTRA_TOUCH_STEP = "touch"
BULK_CHUNK = 50_000

_UPCOMING_SQL = ", ".join(f"'{s}'" for s in UPCOMING_STATUSES)


def reminder_step_key(offset_minutes: int) -> str:
    return f"reminder:{offset_minutes}"


def _steps(rule_id: int, offsets: list[int]) -> list[tuple[int, str, int, int]]:
    """(rule, step key, offset, expiry offset): a reminder that could not go out before the
    next one is due is dropped rather than sent late next to it; the last expires when the
    visit starts."""
    ordered = sorted(set(offsets), reverse=True)
    return [
        (rule_id, reminder_step_key(o), o, ordered[i + 1] if i + 1 < len(ordered) else 0)
        for i, o in enumerate(ordered)
    ]


@dataclass(frozen=True)
class _Rules:
    """The active rules as SQL VALUES lists; rank orders them by specificity, the
    appointment-type override above the practice override (the visit's needs, e.g. a
    preparation reminder, outweigh a practice's general cadence)."""

    rules_sql: str
    rules_params: list
    steps_sql: str
    steps_params: list

    @classmethod
    def load(cls) -> _Rules:
        rules = [(0, 0, 0, 0, 0, "sms", True, True)]  # Careline's default for every org
        steps = _steps(0, DEFAULT_OFFSETS_MINUTES)
        for rule in ReminderRule.objects.filter(active=True).order_by("id"):
            specificity = {
                (False, False): 1,
                (True, False): 2,
                (False, True): 3,
                (True, True): 4,
            }[(rule.practice_id is not None, rule.appointment_type_id is not None)]
            rules.append(
                (
                    rule.id,
                    rule.organization_id,
                    rule.practice_id or 0,
                    rule.appointment_type_id or 0,
                    specificity * 2**40 + rule.id,
                    rule.channel,
                    rule.stop_when_confirmed,
                    rule.send_event_messages,
                )
            )
            steps.extend(_steps(rule.id, rule.offsets_minutes))
        rule_row = (
            "(CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT), "
            "CAST(%s AS BIGINT), CAST(%s AS VARCHAR(10)), CAST(%s AS BOOLEAN), "
            "CAST(%s AS BOOLEAN))"
        )
        step_row = (
            "(CAST(%s AS BIGINT), CAST(%s AS VARCHAR(40)), CAST(%s AS INTEGER), "
            "CAST(%s AS INTEGER))"
        )
        return cls(
            rules_sql=", ".join([rule_row] * len(rules)),
            rules_params=[v for r in rules for v in r],
            steps_sql=", ".join([step_row] * len(steps)),
            steps_params=[v for s in steps for v in s],
        )

    def cte(self, appointment_filter: str, filter_params: list) -> tuple[str, list]:
        """rules, steps, and eff: each appointment passing the filter (its id and the
        columns planning reads) with its winning rule (rule_id, channel, stop_confirmed,
        events)."""
        sql = f"""
        WITH rules (rule_id, org_id, practice_id, type_id, rnk, channel, stop_confirmed, events)
          AS (VALUES {self.rules_sql}),
        steps (rule_id, step_key, offset_minutes, expiry_offset) AS (VALUES {self.steps_sql}),
        eff AS (
          SELECT a.id, a.organization_id, a.practice_id, a.patient_id, a.start, a.status,
            a.created_at, a.status_changed_at, r.rule_id, r.channel, r.stop_confirmed, r.events
          FROM {APPOINTMENT} a
          JOIN rules r ON r.org_id IN (a.organization_id, 0)
            AND r.practice_id IN (a.practice_id, 0) AND r.type_id IN (a.appointment_type_id, 0)
          WHERE {appointment_filter}
            AND NOT EXISTS (
              SELECT 1 FROM rules r2 WHERE r2.org_id IN (a.organization_id, 0)
                AND r2.practice_id IN (a.practice_id, 0)
                AND r2.type_id IN (a.appointment_type_id, 0) AND r2.rnk > r.rnk)
        )
        """
        return sql, [*self.rules_params, *self.steps_params, *filter_params]


def _dt(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _minus_minutes(column: str, minutes: str) -> str:
    if connection.vendor == "sqlite":
        return f"datetime({column}, '-' || {minutes} || ' minutes')"
    return f"({column} - {minutes} * INTERVAL '1 minute')"


# Texts go to the mobile number; email when the rule says so or there is no mobile.
_USE_EMAIL = (
    "(a.channel <> 'voice' AND ((a.channel = 'email' AND p.email <> '') "
    "OR (p.mobile_phone = '' AND (p.email <> '' OR NOT {_HAS_PHONE}))))"
)
# A patient with phones but no mobile (a landline from a feed) is called; so is everyone
# under a rule whose channel is voice. The worker picks the number to call.
_HAS_PHONE = "CAST(p.phones AS TEXT) <> '[]'"
_USE_EMAIL = _USE_EMAIL.replace("{_HAS_PHONE}", _HAS_PHONE)
# Only reminders are calls: a notice of a booking or a change is written.
_CHANNEL = (
    f"CASE WHEN {_USE_EMAIL} THEN 'email' "
    "WHEN a.channel = 'voice' OR p.mobile_phone = '' THEN 'voice' ELSE 'sms' END"
)
_WRITTEN_CHANNEL = (
    "CASE WHEN (a.channel = 'email' AND p.email <> '') OR p.mobile_phone = '' "
    "THEN 'email' ELSE 'sms' END"
)
# The appointment is read through eff, which carries its columns and the chunk's filter,
# never by joining the appointment table again: PostgreSQL does not carry the chunk's
# range across such a join and would hash the whole table for every chunk (a quadratic
# re-plan).
_JOINS = """
    FROM eff a
    JOIN patients_patient p ON p.id = a.patient_id
    JOIN clinics_practice pr ON pr.id = a.practice_id
    JOIN clinics_organization o ON o.id = a.organization_id
"""


def _select(kind: str, step_key: str, priority: int, due: str, expires: str) -> str:
    """A SELECT of planned messages: a value per outbox column, in outbox.COLUMNS order.
    Its parameters: those of `due` and `expires`, then the creation time and the change
    time (outbox.change_time)."""
    return f"""
    SELECT a.organization_id, a.practice_id, a.patient_id, a.id, NULL,
      {_CHANNEL if kind == MessageKind.REMINDER else _WRITTEN_CHANNEL},
      CASE WHEN {_USE_EMAIL} THEN p.email ELSE p.mobile_phone END,
      CASE WHEN pr.sender_number <> '' THEN pr.sender_number ELSE o.default_sender_number END,
      '', '{kind}', {step_key}, a.start, {"a.stop_confirmed" if kind == "reminder" else "FALSE"},
      {priority}, {due}, {expires}, 'scheduled', '', 0, NULL, NULL, '', '', '', 0, %s, NULL, NULL,
      1, %s
    {_JOINS}
    WHERE (p.mobile_phone <> '' OR p.email <> ''{f" OR {_HAS_PHONE}" if kind == "reminder" else ""})
    """


def _chunk_stamp(appointment_filter: str, filter_params: list) -> datetime:
    """The change time of what a chunk's statements write to the outbox: one for the
    chunk, from the organizations of its visits (outbox.change_time)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT a.organization_id FROM {APPOINTMENT} a WHERE {appointment_filter}",
            filter_params,
        )
        return change_time(row[0] for row in cursor.fetchall())


def _plan_chunk(
    rules: _Rules, appointment_filter: str, filter_params: list, now: datetime, events: bool
) -> None:
    cte, cte_params = rules.cte(appointment_filter, filter_params)
    changed_at = _chunk_stamp(appointment_filter, filter_params)
    at = _dt(changed_at)
    # The UPDATEs name the outbox table itself (no self-join on id), which keeps the plan
    # a single scan on both databases even before statistics exist.
    o = OUTBOX
    outbox_filter = appointment_filter.replace("a.id", f"{o}.appointment_id").replace(
        "a.organization_id", f"{o}.organization_id"
    )
    n = _dt(now)
    # Visits new to a running experiment get their arm first, so a withheld step is never
    # planned (careline.messaging.experiments).
    experiments.assign(appointment_filter, filter_params, n)
    # Stale plans first, so the notices below see the appointment's history as it was.
    # SQLite, which has no statistics on fresh tables, would pick the appointments'
    # status index, and so read every upcoming visit for each chunk (quadratic in a bulk
    # plan). A unary plus on the column keeps it on the chunk's range of appointment ids
    # (careline.messaging.outbox.cancel_planned does the same for the outbox's state).
    plain = "+" if connection.vendor == "sqlite" else ""
    # What became of the visit, checked in this order (the first that holds is the reason).
    # One UPDATE joined to the appointment, not one per reason with a correlated subquery
    # each: the outbox chunk is read once. The chunk's filter is given for both tables, as
    # PostgreSQL does not carry a range across the join: without it, it hashes the whole
    # appointment table for every chunk, which makes a re-plan quadratic.
    not_cancel_notice = f"{o}.kind <> '{MessageKind.CANCELLED}'"
    visit_changes = [
        ("appointment_moved", f"{o}.visit_start <> a.start"),
        (
            "appointment_cancelled",
            f"{not_cancel_notice} AND a.status = '{AppointmentStatus.CANCELLED}'",
        ),
        (
            "appointment_closed",
            f"{not_cancel_notice} AND a.status NOT IN "
            f"({_UPCOMING_SQL}, '{AppointmentStatus.CANCELLED}')",
        ),
        (
            "appointment_reinstated",
            f"{o}.kind = '{MessageKind.CANCELLED}' AND a.status <> '{AppointmentStatus.CANCELLED}'",
        ),
        (
            "confirmed",
            f"{o}.kind = '{MessageKind.REMINDER}' AND {o}.stop_when_confirmed AND "
            f"a.status = '{AppointmentStatus.CONFIRMED}'",
        ),
    ]
    cancel_planned(
        join=f"FROM {APPOINTMENT} a",
        where=f"a.id = {o}.appointment_id AND {outbox_filter} AND {appointment_filter} AND ("
        + " OR ".join(f"({cond})" for _, cond in visit_changes)
        + ")",
        where_params=[*filter_params, *filter_params],
        reason="CASE " + " ".join(f"WHEN {cond} THEN %s" for _, cond in visit_changes) + " END",
        reason_params=[reason for reason, _ in visit_changes],
        now=now,
        changed_at=changed_at,
    )
    # A reminder step the appointment's rule no longer has.
    cancel_planned(
        with_sql=cte,
        with_params=cte_params,
        where=f"{o}.appointment_id IS NOT NULL AND {outbox_filter} "
        f"AND {o}.kind = '{MessageKind.REMINDER}' AND {o}.step_key <> '{EXTRA_TOUCH_STEP}' "
        "AND NOT EXISTS ("
        "SELECT 1 FROM eff e JOIN steps s ON s.rule_id = e.rule_id "
        f"WHERE e.id = {o}.appointment_id AND s.step_key = {o}.step_key)",
        where_params=filter_params,
        reason="%s",
        reason_params=["rule_changed"],
        now=now,
        changed_at=changed_at,
    )

    if events:
        recent = _dt(now - EVENT_NEWS_WINDOW)
        expiry = _dt(now + EVENT_EXPIRY)
        soon = "CASE WHEN a.start < %s THEN a.start ELSE %s END"
        # A visit held out of every reminder hears nothing about itself: a booking or move
        # notice would be a reminder by another name and blur the comparison.
        held_out = "NOT " + experiments.withheld_condition("'notice'")
        upcoming = f"a.events AND {held_out} AND a.status IN ({_UPCOMING_SQL}) AND a.start > %s"
        _ask_now_when_no_reminder_is_ahead(cte, cte_params, n, at)
        insert_planned(
            _select("booked", "'booked'", Priority.EVENT, "%s", soon)
            + f" AND {upcoming} AND a.created_at >= %s AND NOT EXISTS "
            f"(SELECT 1 FROM {OUTBOX} m WHERE m.appointment_id = a.id)",
            [*cte_params, n, expiry, expiry, n, at, n, recent],
            with_sql=cte,
        )
        insert_planned(
            _select("rescheduled", "'rescheduled'", Priority.EVENT, "%s", soon)
            + f" AND {upcoming} AND EXISTS (SELECT 1 FROM {OUTBOX} m "
            "WHERE m.appointment_id = a.id AND m.visit_start <> a.start "
            f"AND m.kind <> '{MessageKind.CANCELLED}')",
            [*cte_params, n, expiry, expiry, n, at, n],
            with_sql=cte,
        )
        insert_planned(
            _select("cancelled", "'cancelled'", Priority.EVENT, "%s", soon)
            + f" AND a.events AND {held_out} AND a.status = '{AppointmentStatus.CANCELLED}' "
            "AND a.start > %s AND a.status_changed_at >= %s AND NOT EXISTS "
            f"(SELECT 1 FROM {OUTBOX} m WHERE m.appointment_id = a.id "
            "AND m.step_key = 'cancelled' AND m.state <> 'cancelled')",
            [*cte_params, n, expiry, expiry, n, at, n, recent],
            with_sql=cte,
        )
        # A cancellation taken back (the front desk's undo) after its notice left: the
        # patient believes the visit is off, so a booking notice says it is on again.
        told = f"'{MessageState.SENDING}', '{MessageState.SENT}', '{MessageState.DELIVERED}'"
        insert_planned(
            _select("booked", "'reinstated'", Priority.EVENT, "%s", soon)
            + f" AND {upcoming} AND EXISTS (SELECT 1 FROM {OUTBOX} m "
            f"WHERE m.appointment_id = a.id AND m.kind = '{MessageKind.CANCELLED}' "
            f"AND m.visit_start = a.start AND m.state IN ({told})) AND NOT EXISTS "
            f"(SELECT 1 FROM {OUTBOX} m WHERE m.appointment_id = a.id "
            "AND m.step_key = 'reinstated' AND m.visit_start = a.start "
            f"AND m.state <> '{MessageState.CANCELLED}')",
            [*cte_params, n, expiry, expiry, n, at, n],
            with_sql=cte,
        )
    _insert_missing_reminders(
        cte, cte_params, n, at, condition=f" AND {plain}a.status IN ({_UPCOMING_SQL})"
    )


def sync_reminders(
    appointment_ids: Iterable[int], *, notices: bool = True, chunk_size: int = SYNC_CHUNK
) -> None:
    """Re-plan the messages of these appointments inside the caller's transaction: cancel
    what no longer fits (moved, cancelled, confirmed, rule changed), add what is missing,
    and (unless `notices` is off, as for a file import) plan booked / rescheduled /
    cancelled notices. Calling it twice adds nothing."""
    ids = sorted({int(i) for i in appointment_ids})
    if not ids:
        return
    now = timezone.now()
    rules = _Rules.load()
    with transaction.atomic():
        for start in range(0, len(ids), chunk_size):
            chunk = ids[start : start + chunk_size]
            placeholders = ", ".join(["%s"] * len(chunk))
            _plan_chunk(rules, f"a.id IN ({placeholders})", chunk, now, events=notices)


def plan_all_reminders(
    *, organization_id: int | None = None, chunk_size: int = BULK_CHUNK, now: datetime | None = None
) -> None:
    """Plan reminders for every upcoming appointment (e.g. after a rule change or a first
    import), one transaction per chunk of appointment ids. Announces nothing: booking and
    cancellation notices belong to the change that caused them (sync_reminders)."""
    now = now or timezone.now()
    rules = _Rules.load()
    upcoming = Appointment.objects.filter(start__gt=now)
    if organization_id is not None:
        upcoming = upcoming.filter(organization_id=organization_id)
    bounds = list(upcoming.order_by("id").values_list("id", flat=True)[:1]) + list(
        upcoming.order_by("-id").values_list("id", flat=True)[:1]
    )
    if not bounds:
        return
    low, high = bounds[0], bounds[1]
    org_filter = " AND a.organization_id = %s" if organization_id is not None else ""
    for start in range(low, high + 1, chunk_size):
        params = [start, start + chunk_size]
        if organization_id is not None:
            params.append(organization_id)
        with transaction.atomic():
            _plan_chunk(rules, f"a.id >= %s AND a.id < %s{org_filter}", params, now, events=False)
    # A bulk load: the outbox's statistics before it may say it is empty.
    refresh_statistics(OutboundMessage, PatientAssignment, ExperimentAssignment)


# -- re-planning after a rule change ------------------------------------------------


@dataclass(frozen=True)
class RuleScope:
    """Which visits a reminder rule can apply to (None: any practice / type), and what it
    planned; what a rule was before a change is re-planned as well as what it is. `stored`:
    read from the saved rule (not a guess at what a new rule's visits had), so only what
    changed between the two needs re-planning."""

    organization_id: int
    practice_id: int | None
    appointment_type_id: int | None
    offsets_minutes: tuple[int, ...] = ()
    channel: str = ""
    stop_when_confirmed: bool = True
    stored: bool = False
    active: bool = True

    @classmethod
    def of(cls, rule: ReminderRule, *, stored: bool = False) -> RuleScope:
        return cls(
            rule.organization_id,
            rule.practice_id,
            rule.appointment_type_id,
            tuple(rule.offsets_minutes or ()) if rule.active else (),
            rule.channel,
            rule.stop_when_confirmed,
            stored,
            rule.active,
        )

    @property
    def key(self) -> tuple[int, int | None, int | None]:
        return (self.organization_id, self.practice_id, self.appointment_type_id)

    def condition(self) -> tuple[str, list]:
        sql, params = ["a.organization_id = %s"], [self.organization_id]
        if self.practice_id is not None:
            sql.append("a.practice_id = %s")
            params.append(self.practice_id)
        if self.appointment_type_id is not None:
            sql.append("a.appointment_type_id = %s")
            params.append(self.appointment_type_id)
        return "(" + " AND ".join(sql) + ")", params


def _moves(before: tuple[int, ...], after: list[int]) -> list[tuple]:
    """(old step key, new step key, new offset, new expiry offset): a step the rule no
    longer has becomes, in place, the step it gained at the same rank (longest lead
    first), e.g. 72 h, 24 h → 48 h, 24 h moves the 72-hour reminder to 48 hours."""
    kept = set(before) & set(after)
    removed = sorted(set(before) - kept, reverse=True)
    expiry = {key: expires for _, key, _, expires in _steps(0, after)}
    added = sorted(set(after) - kept, reverse=True)
    return [
        (reminder_step_key(old), reminder_step_key(new), new, expiry[reminder_step_key(new)])
        for old, new in zip(removed, added, strict=False)
    ]


def _keys_sql(keys: Iterable[str]) -> str:
    return ", ".join(f"'{key}'" for key in sorted(keys)) or "''"


def replan_for_rule(
    rule: ReminderRule, *, before: RuleScope | None = None, now: datetime | None = None
) -> None:
    """A reminder rule was saved or deleted (`rule` as it is now, `before` as it was):
    re-plan the not-yet-sent reminders of every upcoming visit either applies to, inside
    the caller's transaction. Sent, sending and suppressed messages stay as they are.

    Set-based and not chunked: at most four statements whatever the number of visits (an
    UPDATE moving the reminders of changed steps in place, an UPDATE of the expiry,
    channel and stop-when-confirmed of kept steps, one cancelling the steps no rule wants,
    an INSERT … SELECT of missing steps); a statement that cannot change anything for this
    change is left out. Every door that changes a rule calls this through
    careline.messaging.rules."""
    now = now or timezone.now()
    n = _dt(now)
    after = RuleScope.of(rule)
    scopes = [after] + ([before] if before is not None else [])
    conditions = [RuleScope(*key).condition() for key in dict.fromkeys(s.key for s in scopes)]
    appointment_filter = (
        "(" + " OR ".join(sql for sql, _ in conditions) + f") AND a.start > %s "
        f"AND a.status IN ({_UPCOMING_SQL})"
    )
    filter_params = [p for _, params in conditions for p in params] + [n]
    rules = _Rules.load()
    cte, cte_params = rules.cte(appointment_filter, filter_params)
    o = OUTBOX
    # The same rule, as saved and in force before, over the same visits: their plans hold
    # its old steps, and only what differs between the two needs looking at.
    same = (
        before is not None
        and before.stored
        and before.active
        and after.active
        and before.key == after.key
    )
    old_steps = (
        {key: expires for _, key, _, expires in _steps(0, list(before.offsets_minutes))}
        if before
        else {}
    )
    new_steps = {key: expires for _, key, _, expires in _steps(0, list(after.offsets_minutes))}
    added, removed = set(new_steps) - set(old_steps), set(old_steps) - set(new_steps)
    kept_changed = not same or (
        before.channel != after.channel
        or before.stop_when_confirmed != after.stop_when_confirmed
        or any(old_steps[k] != new_steps[k] for k in set(old_steps) & set(new_steps))
    )
    stop_turned_on = not same or (after.stop_when_confirmed and not before.stop_when_confirmed)
    use_email = _USE_EMAIL
    address = f"CASE WHEN {use_email} THEN p.email ELSE p.mobile_phone END"
    channel = _CHANNEL
    with transaction.atomic():
        changed_at = change_time([rule.organization_id])
        at = _dt(changed_at)
        experiments.assign(appointment_filter, filter_params, n)
        moves = _moves(before.offsets_minutes if before else (), list(after.offsets_minutes))
        if rule.active and moves:
            move_row = (
                "(CAST(%s AS VARCHAR(40)), CAST(%s AS VARCHAR(40)), CAST(%s AS INTEGER), "
                "CAST(%s AS INTEGER))"
            )
            due = _minus_minutes("a.start", "mv.offset_minutes")
            reschedule_planned(
                with_sql=f"{cte}, moves (old_key, new_key, offset_minutes, expiry_offset) "
                f"AS (VALUES {', '.join([move_row] * len(moves))})",
                with_params=[*cte_params, *(v for move in moves for v in move)],
                assignments=f"step_key = mv.new_key, due_at = {due}, "
                f"expires_at = {_minus_minutes('a.start', 'mv.expiry_offset')}, "
                "stop_when_confirmed = a.stop_confirmed, next_attempt_at = NULL",
                from_sql="FROM eff a JOIN moves mv ON 1 = 1",
                where=f"a.id = {o}.appointment_id AND a.rule_id = %s "
                f"AND {o}.kind = '{MessageKind.REMINDER}' AND {o}.step_key = mv.old_key "
                f"AND {o}.visit_start = a.start AND {due} > %s "
                f"AND NOT (a.stop_confirmed AND a.status = '{AppointmentStatus.CONFIRMED}') "
                f"AND NOT {experiments.withheld_condition('mv.new_key')} "
                f"AND NOT EXISTS (SELECT 1 FROM {o} m WHERE m.appointment_id = a.id "
                "AND m.step_key = mv.new_key AND m.visit_start = a.start "
                f"AND m.state <> '{MessageState.CANCELLED}')",
                where_params=[rule.id, n],
                changed_at=changed_at,
            )
        if kept_changed:
            # Steps the visit's rule still has: the same due time (the worker may have put
            # it off to sending hours), but the expiry, channel and stop-when-confirmed it
            # gives.
            expires = _minus_minutes("a.start", "s.expiry_offset")
            reschedule_planned(
                with_sql=cte,
                with_params=cte_params,
                assignments=f"expires_at = {expires}, stop_when_confirmed = a.stop_confirmed, "
                f"channel = {channel}, to_address = {address}",
                from_sql="FROM eff a JOIN steps s ON s.rule_id = a.rule_id "
                "JOIN patients_patient p ON p.id = a.patient_id",
                where=f"a.id = {o}.appointment_id AND s.step_key = {o}.step_key "
                f"AND {o}.kind = '{MessageKind.REMINDER}' AND {o}.visit_start = a.start "
                f"AND ({o}.expires_at <> {expires} "
                f"OR {o}.stop_when_confirmed <> a.stop_confirmed OR {o}.channel <> {channel} "
                f"OR {o}.to_address <> {address})",
                where_params=[],
                changed_at=changed_at,
            )
        if not same or removed or stop_turned_on:
            # Steps no rule of the visit wants any more (a move that could not be made:
            # its new time has passed), and reminders a confirmed visit no longer needs.
            steps_filter = (
                ""
                if not same or stop_turned_on
                else (f"{o}.step_key IN ({_keys_sql(removed)}) AND ")
            )
            cancel_planned(
                with_sql=cte,
                with_params=cte_params,
                join="FROM eff a",
                where=f"a.id = {o}.appointment_id AND {o}.kind = '{MessageKind.REMINDER}' "
                f"AND {steps_filter}(NOT EXISTS (SELECT 1 FROM steps s "
                f"WHERE s.rule_id = a.rule_id AND s.step_key = {o}.step_key) "
                f"OR (a.stop_confirmed AND a.status = '{AppointmentStatus.CONFIRMED}'))",
                where_params=[],
                reason="%s",
                reason_params=["rule_changed"],
                now=now,
                changed_at=changed_at,
            )
        if not same or added:
            # A visit whose old step was already sent had nothing to move.
            _insert_missing_reminders(cte, cte_params, n, at, only=None if not same else added)


def _insert_missing_reminders(
    cte: str,
    cte_params: list,
    n,
    at,
    *,
    only: Iterable[str] | None = None,
    condition: str = "",
) -> None:
    """The rule's steps still ahead (of `only` these step keys; of the visits meeting
    `condition`, SQL on `a`) that have no live message for the visit's time."""
    steps_filter = "" if only is None else f" AND s.step_key IN ({_keys_sql(only)})"
    due = _minus_minutes("a.start", "s.offset_minutes")
    insert_planned(
        _select(
            "reminder",
            "s.step_key",
            Priority.REMINDER,
            due,
            _minus_minutes("a.start", "s.expiry_offset"),
        ).replace("FROM eff a", "FROM eff a JOIN steps s ON s.rule_id = a.rule_id")
        + condition
        + f" AND NOT (a.stop_confirmed AND a.status = '{AppointmentStatus.CONFIRMED}') "
        f"AND NOT {experiments.withheld_condition('s.step_key')} "
        f"AND {due} > %s{steps_filter}",
        [*cte_params, n, at, n],
        with_sql=cte,
    )


def plan_extra_touch(appointment_ids: list[int], *, now: datetime) -> None:
    """One more reminder, due now, for these high-risk visits (careline.messaging.touches):
    through the visit's rule's channel, never for a visit the rule stops texting once
    confirmed, nor one withheld from every reminder by a holdout."""
    if not appointment_ids:
        return
    rules, n = _Rules.load(), _dt(now)
    withheld = experiments.withheld_condition(f"'{EXTRA_TOUCH_STEP}'")
    for start in range(0, len(appointment_ids), SYNC_CHUNK):
        chunk = appointment_ids[start : start + SYNC_CHUNK]
        chunk_filter = f"a.id IN ({', '.join(['%s'] * len(chunk))})"
        at = _dt(_chunk_stamp(chunk_filter, chunk))
        cte, cte_params = rules.cte(chunk_filter, chunk)
        insert_planned(
            _select("reminder", f"'{EXTRA_TOUCH_STEP}'", Priority.REMINDER, "%s", "a.start")
            + f" AND a.status IN ({_UPCOMING_SQL}) AND a.start > %s "
            f"AND NOT (a.stop_confirmed AND a.status = '{AppointmentStatus.CONFIRMED}') "
            f"AND NOT {withheld}",
            [*cte_params, n, n, at, n],
            with_sql=cte,
        )


def _ask_now_when_no_reminder_is_ahead(cte: str, cte_params: list, n, at) -> None:
    """A visit booked (or changed) inside its last reminder's window would get a booking
    notice, which does not ask to confirm, and no reminder: plan that last reminder now
    instead. Planned before the booking notice, which a visit with a message already
    planned does not get, so the patient gets one text and it asks. A visit that will get
    a reschedule notice (which asks) or had a reminder for this time is left alone."""
    last_due = _minus_minutes("a.start", "s.offset_minutes")
    o = OUTBOX
    insert_planned(
        _select("reminder", "s.step_key", Priority.REMINDER, "%s", "a.start").replace(
            "FROM eff a", "FROM eff a JOIN steps s ON s.rule_id = a.rule_id"
        )
        + f" AND s.expiry_offset = 0 AND a.status IN ({_UPCOMING_SQL}) AND a.start > %s "
        f"AND {last_due} <= %s "
        f"AND NOT (a.stop_confirmed AND a.status = '{AppointmentStatus.CONFIRMED}') "
        f"AND NOT {experiments.withheld_condition('s.step_key')} "
        f"AND NOT EXISTS (SELECT 1 FROM {o} m WHERE m.appointment_id = a.id "
        f"AND m.kind = '{MessageKind.REMINDER}' AND m.visit_start = a.start "
        f"AND m.state <> '{MessageState.CANCELLED}') "
        f"AND NOT (a.events AND EXISTS (SELECT 1 FROM {o} m WHERE m.appointment_id = a.id "
        f"AND m.visit_start <> a.start AND m.kind <> '{MessageKind.CANCELLED}'))",
        [*cte_params, n, n, at, n, n],
        with_sql=cte,
    )
