"""Sending no faster than carriers allow, counted in segments per second per sender.

Semantics: the limit holds per worker process and per sender number. Each sender has a
"next free time" on the monotonic clock (GCRA, the token bucket written as a schedule): a
message of n segments waits until then and pushes it n/rate seconds further, so a
three-segment text costs three times a one-segment one, as carriers count. When the
worker itself ran late (claiming a batch, a slow database) by at most CATCH_UP_SECONDS, the
schedule is kept rather than restarted, so the long-run rate is the configured one and not
a little below it; after a longer pause the schedule restarts from now, so idle time is
never saved up as a burst. With k worker processes sharing one sender, configure rate/k
each.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# A bucket one second deep: a worker that stalled up to a second (a busy machine, a
# database checkpoint) keeps the configured long-run rate; at most one extra second's
# worth goes out faster than the rate afterwards.
CATCH_UP_SECONDS = 1.0


class SenderRateLimiter:
    def __init__(
        self,
        segments_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if segments_per_second < 0:
            raise ValueError("The rate limit cannot be negative (0 means no limit).")
        self.rate = segments_per_second
        self.clock = clock
        self.sleep = sleep
        self._next_free: dict[str, float] = {}

    def reserve(self, sender: str, segments: int) -> float:
        """Book the sender for `segments`; returns how long to wait before sending."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        start = self._next_free.get(sender, now)
        if now - start > CATCH_UP_SECONDS:
            start = now
        self._next_free[sender] = start + max(segments, 1) / self.rate
        return max(start - now, 0.0)

    def wait(self, sender: str, segments: int) -> None:
        delay = self.reserve(sender, segments)
        if delay > 0:
            self.sleep(delay)
