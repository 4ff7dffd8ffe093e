"""Sending the write-back outbox over MLLP: due rows claimed, each stream in order, ACKs
read, retries on the one schedule every background loop uses (careline.background)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from itertools import groupby

from django.utils import timezone

from careline.integrations.hl7.mllp import MllpClient
from careline.integrations.hl7.parsing import normalize_segment_breaks, unescape
from careline.integrations.hl7.writeback.queue import (
    AckReading,
    claim_due,
    fill_outbox,
    record_ack,
    retry_later,
)
from careline.integrations.models import Hl7Feed, Hl7OutboundMessage

logger = logging.getLogger("careline.integrations.hl7.writeback")

ACK_TIMEOUT_SECONDS = 30.0


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
        rows = claim_due(now, batch_size)
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
            retry_later(row, now, f"Cannot connect to {address}: {_why(exc)}.", stats)
        return
    with client:
        for i, row in enumerate(rows):
            try:
                ack = client.send(row.raw)
            except OSError as exc:
                retry_later(row, now, f"No ACK from {address}: {_why(exc)}.", stats)
                for untried in rows[i + 1 :]:
                    retry_later(
                        untried, now, "Not sent: the connection failed.", stats, tried=False
                    )
                return
            reading = read_ack(ack, row.control_id)
            record_ack(row, reading, now, stats)
            if not reading.in_step:
                # The connection answers something else; start afresh next pass.
                for untried in rows[i + 1 :]:
                    retry_later(
                        untried,
                        now,
                        "Not sent: the connection got out of step.",
                        stats,
                        tried=False,
                    )
                return


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def run_once(
    *, now: datetime | None = None, batch_size: int = 50, timeout: float = ACK_TIMEOUT_SECONDS
) -> Counter[str]:
    """Queue what patients did, then send everything due."""
    now = now or timezone.now()
    stats: Counter[str] = Counter()
    stats["queued"] = fill_outbox(now=now)
    stats.update(send_due(now=now, batch_size=batch_size, timeout=timeout))
    return +stats
