"""The fake Twilio of tests/messaging, failing a share of all calls the ways Twilio does.

A failed call is either a 5xx before Twilio did anything, or an answer that comes too late
for the client: the message was created (or the list read) but the caller timed out, the
case where only reconciliation can tell whether a text went out.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.messaging.fake_twilio import (
    SERVER_ERROR,
    FakeError,
    FakeTwilio,
    _Handler,
    _Server,
)

SERVER_ERRORS = (
    SERVER_ERROR,
    FakeError(502, 0, "Bad Gateway"),
    FakeError(503, 0, "Service Unavailable"),
)


@dataclass
class FlakyTwilio(FakeTwilio):
    failure_rate: float = 0.3
    # Of the failures, this share are late answers (timeouts); the rest are 5xx.
    timeout_share: float = 0.5
    # How late a late answer is; set it above the client's TWILIO_TIMEOUT_SECONDS.
    late_by: float = 0.3
    seed: int = 0
    # The first this many calls all answer late (an outage), whatever the failure rate.
    outage_calls: int = 0
    injected: Counter = field(default_factory=Counter)
    in_flight: int = 0
    _rng: random.Random | None = None

    def roll(self) -> FakeError | str:
        """What goes wrong with the next call: nothing (""), "timeout" or a 5xx error."""
        with self.lock:
            if self._rng is None:
                self._rng = random.Random(self.seed)
            draw = self._rng.random()
            if self.outage_calls > 0:
                self.outage_calls -= 1
                self.injected["timeout"] += 1
                return "timeout"
            if draw >= self.failure_rate:
                return ""
            if draw < self.failure_rate * self.timeout_share:
                self.injected["timeout"] += 1
                return "timeout"
            self.injected["5xx"] += 1
            return self._rng.choice(SERVER_ERRORS)

    def wait_until_idle(self, seconds: float = 10) -> None:
        """Until every request, late answers included, has been handled. In production a
        retry comes after a backoff of 30 s or more, long after Twilio acted on the first
        attempt; a test that retries at once must wait for that much to be true."""
        deadline = time.monotonic() + seconds
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not self.in_flight, "the fake Twilio is still busy"

    def posted_to(self, number: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages.values() if m["to"] == number]


class _FlakyHandler(_Handler):
    server: _FlakyServer
    fault: FakeError | str = ""

    def handle(self) -> None:
        fake = self.server.fake
        with fake.lock:
            fake.in_flight += 1
        try:
            super().handle()
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _prelude(self, method: str):
        checked = super()._prelude(method)
        if checked is None:
            return None
        self.fault = self.server.fake.roll()
        if isinstance(self.fault, FakeError):
            self._error(self.fault)
            return None
        return checked

    def _send_json(self, status: int, payload: dict) -> None:
        if self.fault == "timeout":
            time.sleep(self.server.fake.late_by)
        try:
            super()._send_json(status, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, as it should


class _FlakyServer(_Server):
    fake: FlakyTwilio


class running_flaky_twilio:
    """Context manager: a FlakyTwilio listening on 127.0.0.1 at a random free port."""

    def __init__(self, account_sid: str, auth_token: str, **knobs: object) -> None:
        self.fake = FlakyTwilio(account_sid=account_sid, auth_token=auth_token, **knobs)

    def __enter__(self) -> FlakyTwilio:
        self.server = _FlakyServer(("127.0.0.1", 0), _FlakyHandler)
        self.server.fake = self.fake
        self.fake.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
