"""Rate limits kept in the database, so every web process and machine counts together.

Fixed windows: each (limit, subject, window) is one row incremented with an atomic UPDATE,
so concurrent requests never lose a hit. A burst across a window boundary may reach twice
the limit, which is fine for slowing down abuse.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from careline.selfservice.models import RateCounter


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window: timedelta


# Texting a code costs money and can harass the owner of a number: tight limits.
CODE_PER_NUMBER = Limit("code-number", 3, timedelta(minutes=15))
CODE_PER_NUMBER_DAY = Limit("code-number-day", 8, timedelta(days=1))
CODE_PER_ADDRESS = Limit("code-address", 10, timedelta(minutes=15))
CODE_CHECKS_PER_ADDRESS = Limit("code-check-address", 30, timedelta(minutes=15))
BOOKINGS_PER_NUMBER = Limit("booking-number", 4, timedelta(days=1))
BOOKINGS_PER_ADDRESS = Limit("booking-address", 20, timedelta(hours=1))
# Unknown tokens from one address: someone guessing links.
BAD_LINKS_PER_ADDRESS = Limit("bad-link-address", 20, timedelta(minutes=10))


class RateLimited(Exception):
    def __init__(self, retry_after: timedelta):
        super().__init__("Too many attempts.")
        self.retry_after = retry_after

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after.total_seconds() / 60))


def _key(limit: Limit, subject: str) -> str:
    return hmac.new(
        settings.SECRET_KEY.encode(), f"{limit.name}:{subject}".encode(), hashlib.sha256
    ).hexdigest()


def _window_start(limit: Limit, now: datetime) -> datetime:
    seconds = int(limit.window.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo)


def hit(limit: Limit, subject: str, *, now: datetime | None = None) -> None:
    """Count one attempt; raise RateLimited (without counting) when the window is full."""
    now = now or timezone.now()
    key, start = _key(limit, subject), _window_start(limit, now)
    with transaction.atomic():
        if not RateCounter.objects.filter(key=key, window_start=start).exists():
            try:
                with transaction.atomic():
                    RateCounter.objects.create(key=key, window_start=start, count=0)
            except IntegrityError:
                pass  # another process created it first
        # The WHERE makes the check and the increment one atomic statement.
        counted = RateCounter.objects.filter(
            key=key, window_start=start, count__lt=limit.max_hits
        ).update(count=F("count") + 1)
    if not counted:
        raise RateLimited(start + limit.window - now)


def check(limits: list[tuple[Limit, str]], *, now: datetime | None = None) -> None:
    """Count the attempt against several limits; fails on the first full one."""
    for limit, subject in limits:
        hit(limit, subject, now=now)


def forget_old(*, now: datetime | None = None) -> int:
    """Delete windows older than the longest limit (run by the periodic sweep)."""
    now = now or timezone.now()
    deleted, _ = RateCounter.objects.filter(window_start__lt=now - timedelta(days=2)).delete()
    return deleted
