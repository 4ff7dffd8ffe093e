"""The one harness every background loop runs in, and the one retry schedule.

`careline worker`, `careline hl7-writeback` and `careline waitlist` are each a list of
passes (`Pass`) handed to `run_passes`: it runs the due ones, sleeps when none found
work, survives a database restart (drop the dead connections, try again), keeps one
failing pass from stopping the others, and stops after the pass in hand on SIGTERM or
SIGINT. It imports no app, so every layer may use it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import DatabaseError, connections

logger = logging.getLogger("careline.background")

RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
DATABASE_RETRY_SECONDS = 2.0


def backoff(attempts: int) -> timedelta:
    """Wait before retry number `attempts`: 30 s, 1 min, 2 min, … at most an hour."""
    return min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_MAX)


@dataclass
class Pass:
    """One kind of background work: `run` does what is due and returns what it did."""

    name: str
    run: Callable[[], Mapping[str, int] | None]
    every: float = 0.0  # seconds between passes; 0: every round
    # A pass that must not fail silently (the reminder dispatcher) stops the loop on an
    # error that is not the database's; the others are logged and tried next round.
    essential: bool = False
    on_stop: Callable[[], None] | None = None
    last_run: float = field(default=float("-inf"), repr=False)


def summary(stats: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((stats or {}).items())) or "nothing due"


def run_round(passes: list[Pass], *, due_only: bool = True) -> tuple[Counter[str], bool]:
    """Run every pass that is due once. Returns (what was done, whether the database
    was unavailable)."""
    done: Counter[str] = Counter()
    database_down = False
    for p in passes:
        if due_only and time.monotonic() - p.last_run < p.every:
            continue
        p.last_run = time.monotonic()
        try:
            done.update(p.run() or {})
        except DatabaseError:
            # Restart or failover: rows claimed before are reconciled on the next pass,
            # never resent blindly.
            logger.warning("%s: database unavailable", p.name)
            connections.close_all()
            database_down = True
        except Exception:
            if p.essential:
                raise
            logger.exception("%s pass failed", p.name)
    return done, database_down


def run_passes(
    passes: list[Pass], *, sleep: float, stop: threading.Event | None = None
) -> Counter[str]:
    """Run the passes until SIGTERM/SIGINT (or `stop`); returns the totals."""
    stop = stop or threading.Event()

    def request_stop(signum, frame) -> None:
        stop.set()
        for p in passes:
            if p.on_stop:
                p.on_stop()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, request_stop)
    totals: Counter[str] = Counter()
    logger.info("Background passes started: %s", ", ".join(p.name for p in passes))
    while not stop.is_set():
        done, database_down = run_round(passes)
        totals.update(done)
        if database_down:
            stop.wait(DATABASE_RETRY_SECONDS)
        elif not any(done.values()):
            stop.wait(sleep)
    logger.info("Background passes stopped: %s", summary(totals))
    return totals
