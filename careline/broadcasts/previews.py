"""The compose page's audience count: at once when the audience is small, else by the worker
(`count_waiting`) while the page polls, so no web request spends seconds counting a
practice group (issue 21). The one writer of BroadcastPreview."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from careline.broadcasts.models import BroadcastPreview
from careline.broadcasts.sending import Audience, BroadcastError, Preview, audience_within, preview

# Asking again for the same audience and time within this long reuses the count.
REUSE_FOR = timedelta(minutes=5)
# Counts older than this are dropped by the worker.
KEEP_FOR = timedelta(days=1)


def _key(organization_id: int, audience: Audience, send_at: datetime | None) -> str:
    record = [organization_id, audience.as_record(), send_at.isoformat() if send_at else None]
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def ask(
    organization_id: int, audience: Audience, *, send_at: datetime | None = None, user=None
) -> Preview | BroadcastPreview:
    """The audience's Preview, counted now when the audience is small; otherwise the
    BroadcastPreview the worker counts (the same one for the same audience, time and user
    while it is fresh: composing re-asks on every change)."""
    if audience_within(organization_id, audience, settings.CARELINE_BROADCAST_INLINE_COUNT):
        return preview(organization_id, audience, send_at=send_at)
    key = _key(organization_id, audience, send_at)
    now = timezone.now()
    recent = (
        BroadcastPreview.objects.filter(
            key=key, requested_by=user, requested_at__gte=now - REUSE_FOR, error=""
        )
        .order_by("-requested_at")
        .first()
    )
    if recent is not None:
        return recent
    return BroadcastPreview.objects.create(
        organization_id=organization_id,
        audience=audience.as_record(),
        send_at=send_at,
        key=key,
        requested_by=user,
        requested_at=now,
    )


def counted(record: BroadcastPreview) -> Preview | None:
    """The worker's count, or None while it is waiting."""
    return Preview(**record.result) if record.result is not None else None


def count_waiting(limit: int = 5) -> Counter[str]:
    """The worker's part: count the waiting previews, oldest first. The count only reads
    (one connection's snapshot, no lock held); the result is one small UPDATE."""
    done: Counter[str] = Counter()
    waiting = BroadcastPreview.objects.filter(counted_at__isnull=True).order_by("requested_at")
    for record in list(waiting[:limit]):
        try:
            summary = preview(
                record.organization_id,
                Audience.from_record(record.audience),
                send_at=record.send_at,
            )
            result, error = asdict(summary), ""
        except BroadcastError as exc:
            result, error = None, str(exc)[:200]
        BroadcastPreview.objects.filter(id=record.id, counted_at__isnull=True).update(
            counted_at=timezone.now(), result=result, error=error
        )
        done["broadcast previews counted"] += 1
    if done:
        BroadcastPreview.objects.filter(requested_at__lt=timezone.now() - KEEP_FOR).delete()
    return done
