"""Sending the write-back outbox over MLLP: due rows claimed, each stream in order, ACKs
read, retries on the one schedule every background loop uses (careline.background)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from careline.background import backoff
from careline.integrations.hl7.mllp import MllpClient
from careline.integrations.hl7.parsing import normalize_segment_breaks, unescape
from careline.integrations.hl7.writeback.queue import fill_outbox, writeback_feeds
from careline.integrations.models import Hl7Feed, Hl7OutboundMessage, Hl7OutboundState

logger = logging.getLogger("careline.integrations.hl7.writeback")

LEASE = timedelta(minutes=2)
MAX_ERROR_ACKS = 5
ACK_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class AckReading:
    code: str  # AA, AE or AR (enhanced-mode CA/CE/CR folded in)
    reason: str
    in_step: bool = True  # False when the ACK answers another message


def read_ack(text: str, control_id: str) -> AckReading:
    """What the EHR said about the message with `control_id`."""
    text = normalize_segment_breaks(text)
    if not text.startswith("MSH") or len(text) < 8:
        return AckReading("AE", "The answer is not an HL7 acknowledgement.", in_step=False)
    field_sep, encoding = text[3], text[4:8]
    separators = "\r" + field_sep + encoding[1] + encoding[0] + encoding[3]
    segments = {s[:3]: s.split(field_sep) for s in reversed(text.split("\r"))}
    msa = segments.get("MSA")
    if msa is None or len(msa) < 2:
        return AckReading("AE", "The acknowledgement has no MSA segment.", in_step=False)

    def field(fields: list[str], n: int) -> str:
        return unescape(fields[n], encoding[2], separators).strip() if len(fields) > n else ""

    code = {"CA": "AA", "CE": "AE", "CR": "AR"}.get(field(msa, 1).upper(), field(msa, 1).upper())
    answered = field(msa, 2)
    if answered != control_id:
        return AckReading(
            "AE", f"The acknowledgement answers message '{answered}', not this one.", False
        )
    if code not in ("AA", "AE", "AR"):
        return AckReading("AE", f"Unknown acknowledgement code '{code}'.")
    err = segments.get("ERR", [])
    reason = field(msa, 3) or field(err, 8) or field(err, 1).replace(encoding[0], " ").strip()
    return AckReading(code, reason)


def _claim(now: datetime, batch_size: int) -> list[Hl7OutboundMessage]:
    earlier_pending = Hl7OutboundMessage.objects.filter(
        feed_id=OuterRef("feed_id"),
        stream=OuterRef("stream"),
        sequence__lt=OuterRef("sequence"),
        state=Hl7OutboundState.PENDING,
    )
    with transaction.atomic():
        rows = list(
            Hl7OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(
                state=Hl7OutboundState.PENDING,
                next_attempt_at__lte=now,
                feed_id__in=writeback_feeds().values("id"),
            )
            .exclude(Exists(earlier_pending))
            .order_by("next_attempt_at", "id")[:batch_size]
        )
        if rows:
            # A lease, not a state: a worker that dies mid-send leaves the row due again.
            Hl7OutboundMessage.objects.filter(pk__in=[r.pk for r in rows]).update(
                next_attempt_at=now + LEASE
            )
    return rows


def send_due(
    *,
    now: datetime | None = None,
    batch_size: int = 50,
    timeout: float = ACK_TIMEOUT_SECONDS,
) -> Counter[str]:
    """Send every due message in order, over one connection per feed and batch."""
    now = now or timezone.now()
    stats: Counter[str] = Counter()
    while True:
        rows = _claim(now, batch_size)
        if not rows:
            return stats
        feeds = {f.pk: f for f in Hl7Feed.objects.filter(pk__in={r.feed_id for r in rows})}
        rows.sort(key=lambda r: (r.feed_id, r.id))
        for feed_id, group in groupby(rows, key=lambda r: r.feed_id):
            _send_to_feed(feeds[feed_id], list(group), now, timeout, stats)


def _send_to_feed(
    feed: Hl7Feed,
    rows: list[Hl7OutboundMessage],
    now: datetime,
    timeout: float,
    stats: Counter[str],
) -> None:
    address = f"{feed.outbound_host}:{feed.outbound_port}"
    try:
        client = MllpClient(feed.outbound_host, feed.outbound_port, timeout=timeout)
    except OSError as exc:
        for row in rows:
            _retry(row, now, f"Cannot connect to {address}: {_why(exc)}.", stats)
        return
    with client:
        for i, row in enumerate(rows):
            try:
                ack = client.send(row.raw)
            except OSError as exc:
                _retry(row, now, f"No ACK from {address}: {_why(exc)}.", stats)
                for untried in rows[i + 1 :]:
                    _retry(untried, now, "Not sent: the connection failed.", stats, tried=False)
                return
            reading = read_ack(ack, row.control_id)
            _record(row, reading, now, stats)
            if not reading.in_step:
                # The connection answers something else; start afresh next pass.
                for untried in rows[i + 1 :]:
                    _retry(
                        untried,
                        now,
                        "Not sent: the connection got out of step.",
                        stats,
                        tried=False,
                    )
                return


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _record(row: Hl7OutboundMessage, reading: AckReading, now: datetime, stats: Counter) -> None:
    row.attempts += 1
    row.ack_code = reading.code
    if reading.code == "AA":
        row.state, row.sent_at, row.last_error = Hl7OutboundState.SENT, now, ""
        stats["sent"] += 1
    elif reading.code == "AR":
        row.state = Hl7OutboundState.FAILED
        row.last_error = f"Rejected by the EHR (AR): {reading.reason or 'no reason given'}"
        stats["failed"] += 1
    else:
        row.error_acks += 1
        row.last_error = f"Error from the EHR (AE): {reading.reason or 'no reason given'}"
        if row.error_acks >= MAX_ERROR_ACKS:
            row.state = Hl7OutboundState.FAILED
            stats["failed"] += 1
        else:
            row.next_attempt_at = now + backoff(row.attempts)
            stats["retry"] += 1
    row.save(
        update_fields=[
            "attempts",
            "error_acks",
            "ack_code",
            "state",
            "sent_at",
            "last_error",
            "next_attempt_at",
        ]
    )
    logger.info("HL7 write-back %s %s: %s (%s)", row.pk, row.message_type, row.state, reading.code)


def _retry(
    row: Hl7OutboundMessage, now: datetime, error: str, stats: Counter, *, tried: bool = True
) -> None:
    if tried:
        row.attempts += 1
        row.last_error = error
    row.next_attempt_at = now + backoff(max(row.attempts, 1))
    row.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    stats["retry" if tried else "deferred"] += 1
    if tried:
        logger.warning("HL7 write-back %s: %s", row.pk, error)


def send_again(messages: QuerySet[Hl7OutboundMessage]) -> int:
    """Make the failed ones among `messages` due now, with a fresh count of AE answers."""
    return messages.filter(state=Hl7OutboundState.FAILED).update(
        state=Hl7OutboundState.PENDING, next_attempt_at=timezone.now(), error_acks=0
    )


def run_once(
    *, now: datetime | None = None, batch_size: int = 50, timeout: float = ACK_TIMEOUT_SECONDS
) -> Counter[str]:
    """Queue what patients did, then send everything due."""
    now = now or timezone.now()
    stats: Counter[str] = Counter()
    stats["queued"] = fill_outbox(now=now)
    stats.update(send_due(now=now, batch_size=batch_size, timeout=timeout))
    return +stats
