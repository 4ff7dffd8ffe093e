"""The worker's work: claim due messages, re-check them at the last moment, send, record.

Crash safety: a row is claimed (state `sending`, body rendered and stored) in one
transaction, before the provider is called. A worker that dies after the claim leaves the
row in `sending`; once its lease has run out, `reconcile_stuck` asks the gateway whether
the provider already accepted that message (`find_sent`) and only a "no" puts it back in
the queue. A retry after an error asks the same question first. So a message is never
sent twice because a worker died or a call timed out.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
import zoneinfo
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from careline.background import backoff
from careline.messaging import outbox, visit_links
from careline.messaging.compliance import DEFER, SEND, Decision, Facts, SendingHours, decide
from careline.messaging.email import EmailContent, compose, email_buttons, send_message_email
from careline.messaging.gateways.base import GatewayError, OutgoingSms, SendResult, SmsGateway
from careline.messaging.models import (
    Channel,
    MessageKind,
    MessageState,
    OutboundMessage,
)
from careline.messaging.outbox import OPTED_OUT_ERROR_CODES, record_provider_opt_out
from careline.messaging.ratelimit import SenderRateLimiter
from careline.messaging.rendering import appointment_variables, render_body
from careline.messaging.segments import count_segments
from careline.messaging.template_syntax import template_variables
from careline.messaging.texts import find_template
from careline.patients.consent import emails_opted_out
from careline.patients.models import Patient, PhoneConsent, email_key
from careline.scheduling.models import Appointment

logger = logging.getLogger(__name__)

FALLBACK_ZONE = zoneinfo.ZoneInfo("America/New_York")
SENT_STATES = (MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED)
# A provider's status report can only be matched once the message's provider id is
# written, so results are held back no longer than this (slow gateways write almost at
# once; a fast one still writes a whole batch in one statement).
FLUSH_AFTER_SECONDS = 0.25
# With a rate limit, a batch is about this many seconds of sending (see Dispatcher).
CLAIM_SECONDS = 0.25
# The reason of a message failed because its own data cannot be prepared (see
# Dispatcher._unprocessable): a code, never the data.
INVALID_DATA = "invalid_data"
_APPOINTMENT_FIELDS = [
    "organization_id",
    "practice_id",
    "patient_id",
    "appointment_type_id",
    "status",
    "start",
    "end",
    "version",
    *(
        f"patient__{f}"
        for f in (
            "home_practice_id",
            "given_name",
            "preferred_language",
            "mobile_phone",
            "email",
            "time_zones",
        )
    ),
]


@lru_cache(maxsize=256)
def _zones(names: str) -> tuple[zoneinfo.ZoneInfo, ...]:
    zones = []
    for name in names.split():
        try:
            zones.append(zoneinfo.ZoneInfo(name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue  # a zone this system's tz database lacks: the others still count
    return tuple(zones)


def status_callback_url() -> str:
    return f"{settings.CARELINE_BASE_URL}/webhooks/twilio/status"


class _Batch:
    """Everything the compliance gate needs about a batch, in a fixed number of queries."""

    def __init__(self, rows: list[OutboundMessage], now: datetime) -> None:
        self.now = now
        # Practices are shared by many rows: prefetched, each is loaded (and built) once.
        # Only the columns the gate and the templates read: building a few hundred full
        # rows per batch was a fifth of the worker's time.
        self.appointments = (
            Appointment.objects.select_related("patient")
            .only(*_APPOINTMENT_FIELDS)
            .prefetch_related("practice__organization")
            .in_bulk([m.appointment_id for m in rows if m.appointment_id])
        )
        patient_ids = {m.patient_id for m in rows if m.patient_id}
        self.patients = {
            a.patient_id: a.patient
            for a in self.appointments.values()
            if a.patient_id in patient_ids
        }
        self.patients.update(
            Patient.objects.select_related("home_practice__organization").in_bulk(
                patient_ids - self.patients.keys()
            )
        )
        self.zones = {a.practice_id: a.practice.zone for a in self.appointments.values()}
        numbers = {self.address(m) for m in rows if m.channel == Channel.SMS}
        self.opted_out = set(
            PhoneConsent.objects.filter(
                opted_out=True,
                phone__in=numbers,
                organization_id__in={m.organization_id for m in rows},
            ).values_list("organization_id", "phone")
        )
        # An address that unsubscribed gets no more email; the number's texts go on.
        self.opted_out |= emails_opted_out(
            {m.organization_id for m in rows},
            {self.address(m) for m in rows if m.channel == Channel.EMAIL},
        )
        self.sent_last_day = Counter(
            dict(
                OutboundMessage.objects.filter(patient_id__in=patient_ids)
                .exclude(kind=MessageKind.REPLY)
                .filter(Q(sent_at__gte=now - timedelta(days=1)) | Q(state=MessageState.SENDING))
                .values_list("patient_id")
                .annotate(n=Count("id"))
            )
        )
        self.reminded: dict[tuple[str, int | None, str, date], set[int]] = {}
        reminders = [m for m in rows if m.kind == MessageKind.REMINDER and m.visit_start]
        if reminders:
            earliest = min(m.visit_start for m in reminders) - timedelta(days=1)
            latest = max(m.visit_start for m in reminders) + timedelta(days=1)
            # The state is checked here, not in SQL: given a state condition, SQLite reads
            # the state index, i.e. every message ever sent, for each batch.
            for (
                number,
                practice_id,
                step_key,
                visit_start,
                appointment_id,
                state,
            ) in OutboundMessage.objects.filter(
                kind=MessageKind.REMINDER,
                to_address__in={self.address(m) for m in reminders},
                visit_start__range=(earliest, latest),
            ).values_list(
                "to_address", "practice_id", "step_key", "visit_start", "appointment", "state"
            ):
                if state not in SENT_STATES:
                    continue
                key = (number, practice_id, step_key, self._local_day(practice_id, visit_start))
                self.reminded.setdefault(key, set()).add(appointment_id)
        self._templates: dict[tuple, tuple[object, bool] | None] = {}
        # Self-service links issued while rendering, saved with the claim in one INSERT.
        self.new_links: list = []
        # Stored texts carry their links redacted (visit_links): a fresh link for each send.
        # (An email is written afresh for each send: careline.messaging.email.)
        stored = {
            m.pk: m.body
            for m in rows
            if m.body and visit_links.REDACTED_TOKEN in m.body and m.channel != Channel.EMAIL
        }
        self.reissued = (
            visit_links.issuer().reissue(stored) if stored and visit_links.registered() else {}
        )

    def _local_day(self, practice_id: int | None, moment: datetime) -> date:
        return moment.astimezone(self.zones.get(practice_id, FALLBACK_ZONE)).date()

    def practice(self, m: OutboundMessage):
        appointment = self.appointments.get(m.appointment_id)
        if appointment is not None:
            return appointment.practice
        patient = self.patients.get(m.patient_id)
        return patient.home_practice if patient is not None else None

    def address(self, m: OutboundMessage) -> str:
        """Where it goes now: the patient's current number or email, if we know the patient."""
        patient = self.patients.get(m.patient_id)
        if patient is None or m.kind in (MessageKind.REPLY,):
            return m.to_address
        return patient.email if m.channel == Channel.EMAIL else patient.mobile_phone

    def facts(self, m: OutboundMessage) -> Facts:
        appointment = self.appointments.get(m.appointment_id)
        practice = self.practice(m)
        zone = practice.zone if practice is not None else FALLBACK_ZONE
        address = self.address(m)
        shared = False
        if m.kind == MessageKind.REMINDER and m.visit_start is not None:
            key = (address, m.practice_id, m.step_key, m.visit_start.astimezone(zone).date())
            shared = bool(self.reminded.get(key, set()) - {m.appointment_id})
        return Facts(
            kind=m.kind,
            channel=m.channel,
            now=self.now,
            expires_at=m.expires_at,
            zone=zone,
            has_address=bool(address),
            patient_zones=self.patient_zones(m),
            opted_out=(
                m.organization_id,
                email_key(address) if m.channel == Channel.EMAIL else address,
            )
            in self.opted_out,
            has_appointment=appointment is not None,
            appointment_status=appointment.status if appointment else "",
            appointment_start=appointment.start if appointment else None,
            visit_start=m.visit_start,
            stop_when_confirmed=m.stop_when_confirmed,
            sent_to_patient_last_day=self.sent_last_day[m.patient_id] if m.patient_id else 0,
            number_already_reminded=shared,
        )

    def patient_zones(self, m: OutboundMessage) -> tuple[zoneinfo.ZoneInfo, ...]:
        """The zones of the patient's phone when the text goes to it (stored with the
        patient when the number is set: nothing to look up here)."""
        patient = self.patients.get(m.patient_id)
        if patient is None or m.channel != Channel.SMS or not patient.time_zones:
            return ()
        return _zones(patient.time_zones)

    def will_send(self, m: OutboundMessage) -> None:
        """Count this message for the cap and the shared-number rule of later rows."""
        if m.patient_id and m.kind != MessageKind.REPLY:
            self.sent_last_day[m.patient_id] += 1
        if m.kind == MessageKind.REMINDER and m.visit_start is not None:
            practice = self.practice(m)
            zone = practice.zone if practice is not None else FALLBACK_ZONE
            key = (m.to_address, m.practice_id, m.step_key, m.visit_start.astimezone(zone).date())
            self.reminded.setdefault(key, set()).add(m.appointment_id)

    def render(self, m: OutboundMessage) -> tuple[str, str] | None:
        """The text of a planned message, from the appointment as it is now: (the text to
        store, with a link's token redacted; the text to send)."""
        appointment = self.appointments.get(m.appointment_id)
        if appointment is None:
            return None
        language = appointment.patient.preferred_language
        key = (
            m.organization_id,
            appointment.practice_id,
            appointment.appointment_type_id,
            m.kind,
            language,
        )
        if key not in self._templates:
            template = find_template(
                organization_id=m.organization_id,
                practice_id=appointment.practice_id,
                appointment_type_id=appointment.appointment_type_id,
                kind=m.kind,
                language=language,
            )
            uses_link = template is not None and "link" in template_variables(template.body)
            self._templates[key] = None if template is None else (template, uses_link)
        if self._templates[key] is None:
            return None
        template, needs_link = self._templates[key]
        if not needs_link:
            body = render_body(template.body, appointment_variables(appointment, language))
            return body, body
        url, link = visit_links.issuer().new(appointment.pk, m.pk)
        self.new_links.append(link)
        text = render_body(template.body, appointment_variables(appointment, language, link=url))
        return visit_links.issuer().redact(text), text

    def text_to_send(self, m: OutboundMessage) -> str:
        """A stored text as it goes out: with a fresh link where the stored one is redacted."""
        if m.pk not in self.reissued:
            return m.body
        text, link = self.reissued[m.pk]
        self.new_links.append(link)
        return text

    def sender(self, m: OutboundMessage) -> str:
        if m.sender:
            return m.sender
        practice = self.practice(m)
        return practice.texting_number if practice is not None else ""


class Dispatcher:
    def __init__(
        self,
        gateway: SmsGateway | None = None,
        *,
        clock: Callable[[], datetime] = timezone.now,
        limiter: SenderRateLimiter | None = None,
        batch_size: int = 200,
        lease_seconds: float | None = None,
        max_attempts: int | None = None,
        hours: SendingHours | None = None,
        daily_cap: int | None = None,
    ) -> None:
        from careline.messaging.gateways.base import get_gateway

        self.gateway = gateway or get_gateway()
        self.clock = clock
        self.limiter = limiter or SenderRateLimiter(settings.CARELINE_SENDER_SEGMENTS_PER_SECOND)
        # With a rate limit, claim a quarter second's worth: claimed rows do not sit in
        # `sending` for long, and a claim never stalls the sends for longer than the
        # limiter's catch-up window (which would lose time and lower the actual rate).
        if self.limiter.rate > 0:
            batch_size = max(1, min(batch_size, int(self.limiter.rate * CLAIM_SECONDS)))
        self.batch_size = batch_size
        self.lease = timedelta(
            seconds=settings.CARELINE_WORKER_LEASE_SECONDS
            if lease_seconds is None
            else lease_seconds
        )
        self.max_attempts = max_attempts or settings.CARELINE_SEND_MAX_ATTEMPTS
        self.hours = hours or SendingHours(
            settings.CARELINE_SENDING_HOURS_START, settings.CARELINE_SENDING_HOURS_END
        )
        self.daily_cap = daily_cap or settings.CARELINE_MAX_TEXTS_PER_PATIENT_PER_DAY
        self.stats: Counter[str] = Counter()
        # Set from a signal handler: finish the message in hand, then stop.
        self.stop_requested = False
        self._sent: list[tuple[int, SendResult, datetime]] = []
        # Claimed texts as they go out, where they differ from the stored ones (a live
        # link): held in memory from the claim to the send, never stored.
        self._texts: dict[int, str] = {}
        # Claimed emails as they go out (with live links), likewise held in memory only.
        self._emails: dict[int, EmailContent] = {}
        self._sent_since = 0.0

    # -- the loop -------------------------------------------------------------------

    def run_once(self) -> Counter[str]:
        """Do all work that is due now (reconcile, then send), then return the counts."""
        self.reconcile_stuck()
        while True:
            to_send, seen = self.claim_batch()
            for message in to_send:
                self.deliver(message)
            self.flush_sent()
            if not seen or self.stop_requested:
                return self.stats

    # -- claiming -------------------------------------------------------------------

    def claim_batch(self) -> tuple[list[OutboundMessage], int]:
        """Atomically take the next due rows (SKIP LOCKED on PostgreSQL, so workers share
        the load; SQLite has one writer at a time), apply the gate and mark the ones to
        send as `sending`. Returns (rows to send, rows looked at)."""
        now = self.clock()
        with transaction.atomic():
            rows = outbox.lock_due(now, self.batch_size)
            if not rows:
                return [], 0
            seen = len(rows)
            batch, rows, changed = self._batch(rows, now)
            to_send = []
            for m in rows:
                links_before = len(batch.new_links)
                try:
                    decision = decide(batch.facts(m), hours=self.hours, daily_cap=self.daily_cap)
                    if decision.action == SEND:
                        decision = self._prepare(m, batch, now)
                except DatabaseError:
                    raise
                except Exception as exc:  # noqa: BLE001 — one row's bad data, not the worker's
                    del batch.new_links[links_before:]
                    self._unprocessable(m, now, exc)
                    changed.append(m)
                    continue
                if decision.action == SEND:
                    batch.will_send(m)
                    to_send.append(m)
                elif decision.action == DEFER:
                    m.due_at = decision.defer_until
                    self.stats["deferred"] += 1
                else:
                    m.state, m.reason, m.finished_at = (
                        MessageState.SUPPRESSED,
                        decision.reason,
                        now,
                    )
                    self.stats[f"suppressed:{decision.reason}"] += 1
                changed.append(m)
            if batch.new_links:
                visit_links.issuer().save(batch.new_links)
            outbox.save_claims(changed)
        return to_send, seen

    def _batch(
        self, rows: list[OutboundMessage], now: datetime
    ) -> tuple[_Batch, list[OutboundMessage], list[OutboundMessage]]:
        """The batch's facts, the rows to decide on and the rows already failed. A row whose
        own facts cannot be gathered (bad data, e.g. a visit date at the end of the
        calendar) is failed, so it cannot hold up any organization's other messages."""
        try:
            return _Batch(rows, now), rows, []
        except DatabaseError:
            raise
        except Exception:  # noqa: BLE001 — find the row(s) at fault, one by one
            good, bad = [], []
            for m in rows:
                try:
                    _Batch([m], now)
                except DatabaseError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    self._unprocessable(m, now, exc)
                    bad.append(m)
                else:
                    good.append(m)
            return _Batch(good, now), good, bad

    def _unprocessable(self, m: OutboundMessage, now: datetime, exc: Exception) -> None:
        """Fail a row the worker cannot prepare (its visit or patient holds data no door
        should have let in) instead of stopping the worker: it shows as failed with
        reason `invalid_data` to its organization's staff (the outbox in the admin, FHIR
        Communication.statusReason). Logged with ids and where it broke only: an
        exception's text may quote a patient's data."""
        m.state, m.reason, m.finished_at = MessageState.FAILED, INVALID_DATA, now
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        logger.error(
            "Message %s (organization %s, appointment %s) cannot be prepared, marked failed "
            "(%s): %s at %s:%s",
            m.pk,
            m.organization_id,
            m.appointment_id,
            INVALID_DATA,
            type(exc).__name__,
            frame.filename.rsplit("/careline/", 1)[-1] if frame else "?",
            frame.lineno if frame else "?",
        )
        self.stats[f"failed:{INVALID_DATA}"] += 1

    def _prepare(self, m: OutboundMessage, batch: _Batch, now: datetime) -> Decision:
        m.to_address = batch.address(m)
        m.sender = batch.sender(m)
        if m.channel == Channel.EMAIL:
            return self._prepare_email(m, batch, now)
        if m.body:
            text = batch.text_to_send(m)
        else:
            rendered = batch.render(m)
            if rendered is None:
                return Decision("suppress", "no_template")
            m.body, text = rendered
        if text != m.body:
            self._texts[m.pk] = text
        m.segments = count_segments(text).segments if m.channel == Channel.SMS else 0
        m.state, m.claimed_at, m.attempts = MessageState.SENDING, now, m.attempts + 1
        return Decision(SEND)

    def _prepare_email(self, m: OutboundMessage, batch: _Batch, now: datetime) -> Decision:
        """An email is written from the visit as it is now, at every claim (a retry too),
        with fresh single-use links saved in the claim's transaction; the outbox keeps its
        plain text with the links' tokens redacted, as it keeps a text's."""
        appointment = batch.appointments.get(m.appointment_id)
        buttons = email_buttons(m.kind)
        if appointment is None or buttons is None:
            return Decision("suppress", "no_template")
        urls, links = visit_links.issuer().email_links(appointment.pk, m.pk, buttons)
        batch.new_links.extend(links)
        content = compose(appointment, m.kind, urls)
        m.body = visit_links.issuer().redact(content.text)
        self._emails[m.pk] = content
        m.segments = 0
        m.state, m.claimed_at, m.attempts = MessageState.SENDING, now, m.attempts + 1
        return Decision(SEND)

    # -- sending --------------------------------------------------------------------

    def outgoing(self, m: OutboundMessage) -> OutgoingSms:
        return OutgoingSms(
            message_id=m.pk,
            to=m.to_address,
            sender=m.sender,
            body=m.body,
            status_callback_url=status_callback_url(),
        )

    def deliver(self, m: OutboundMessage) -> None:
        text = self._texts.pop(m.pk, m.body)
        if m.channel == Channel.EMAIL:
            self._deliver_email(m, self._emails.pop(m.pk))
            return
        # The provider is asked about earlier attempts with the stored text (their links
        # differed), and sent the text with this send's link.
        sms = self.outgoing(m)
        try:
            if m.attempts > 1:
                # An earlier attempt may have reached the provider before failing.
                found = self.gateway.find_sent(sms)
                if found is not None:
                    self._record_sent(m, found)
                    return
            self.limiter.wait(m.sender, m.segments)
            result = self.gateway.send(dataclasses.replace(sms, body=text))
        except GatewayError as exc:
            self._record_failure(m, exc)
            return
        except Exception as exc:  # noqa: BLE001 — an unknown error may be passing; retry
            logger.warning("Message %s: gateway raised %s", m.pk, type(exc).__name__)
            self._record_failure(m, GatewayError(type(exc).__name__, transient=True))
            return
        self._record_sent(m, result)

    def _deliver_email(self, m: OutboundMessage, content: EmailContent) -> None:
        try:
            send_message_email(m, content)
        except Exception as exc:  # noqa: BLE001 — SMTP errors come in many classes
            logger.warning("Message %s: email failed with %s", m.pk, type(exc).__name__)
            self._record_failure(m, GatewayError(str(exc)[:300], transient=True))
            return
        self._record_sent(m, SendResult(provider_message_id="", state=MessageState.SENT))

    def _record_sent(self, m: OutboundMessage, result: SendResult) -> None:
        # Written in groups (flush_sent): one statement for many messages instead of one
        # commit each. A crash before the write leaves the rows in `sending`, which
        # reconciliation settles by asking the provider.
        if not self._sent:
            self._sent_since = time.monotonic()
        self._sent.append((m.pk, result, self.clock()))
        self.stats["sent"] += 1
        if time.monotonic() - self._sent_since >= FLUSH_AFTER_SECONDS:
            self.flush_sent()

    def flush_sent(self) -> None:
        """Write the results held back so far; a row that is no longer `sending` (another
        worker reconciled it after our lease ran out) keeps what it has."""
        outbox.mark_sent(self._sent)
        self._sent = []

    def _record_failure(self, m: OutboundMessage, exc: GatewayError) -> None:
        now = self.clock()
        error = {"error_code": exc.code, "error_message": str(exc)}
        if exc.transient and m.attempts < self.max_attempts:
            outbox.retry_later(m.pk, at=now + backoff(m.attempts), **error)
            self.stats["retry"] += 1
            logger.info("Message %s: transient error %s, will retry", m.pk, exc.code or "-")
            return
        if exc.transient and m.channel == Channel.SMS:
            # The last try timed out or broke off: an earlier one may still have reached
            # the provider. Only the provider can say; "failed" must mean "not sent".
            try:
                found = self.gateway.find_sent(self.outgoing(m))
            except Exception:  # noqa: BLE001 — the provider cannot answer now: ask later
                outbox.retry_later(m.pk, at=now + backoff(m.attempts), **error)
                self.stats["retry"] += 1
                return
            if found is not None:
                self._record_sent(m, found)
                return
        outbox.mark_failed(m.pk, at=now, **error)
        self.stats["failed"] += 1
        logger.info("Message %s: failed with %s", m.pk, exc.code or "-")
        if exc.code in OPTED_OUT_ERROR_CODES:
            record_provider_opt_out(m, exc.code)

    # -- after a crash --------------------------------------------------------------

    def reconcile_stuck(self) -> int:
        """Settle rows left in `sending` past their lease: mark them sent if the provider
        has them, else put them back in the queue (they pass the gate again)."""
        now = self.clock()
        cutoff = now - self.lease
        settled = 0
        while True:
            stuck = list(
                OutboundMessage.objects.filter(
                    state=MessageState.SENDING, claimed_at__lt=cutoff
                ).order_by("id")[:500]
            )
            if not stuck:
                return settled
            for m in stuck:
                if not outbox.take_over_stuck(m, now):
                    continue
                settled += 1
                if m.channel == Channel.EMAIL:
                    # Mail servers offer no lookup; a possible second email beats none.
                    self._requeue(m)
                    continue
                try:
                    found = self.gateway.find_sent(self.outgoing(m))
                except GatewayError:
                    continue  # the provider cannot say now; try after the next lease
                except Exception as exc:  # noqa: BLE001 — one row must not stop the worker
                    logger.warning("Message %s: lookup raised %s", m.pk, type(exc).__name__)
                    continue
                if found is not None:
                    self._record_sent(m, found)
                    self.stats["reconciled_sent"] += 1
                else:
                    self._requeue(m)
            self.flush_sent()

    def _requeue(self, m: OutboundMessage) -> None:
        outbox.requeue(m.pk)
        self.stats["reconciled_requeued"] += 1
