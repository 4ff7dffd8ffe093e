"""What scheduling announces when appointments change, for the layers built on it.

Scheduling does not know who cares about a change: messaging re-plans reminders, the
waitlist offers freed time. Each subscribes here in its AppConfig.ready(), so scheduling
imports neither of them.

- `appointments_changed(ids)` runs the subscribers at once, inside the caller's
  transaction: an appointment never commits without its reminder plan, and a failed
  re-plan rolls the change back. Inside `announced_together()` the ids are gathered
  and announced once when the block ends, still inside the transaction: a feed that
  applies many messages in one transaction re-plans them in one set-based pass.
- `move_taken_back(id, untold_start)` runs the subscribers inside the caller's
  transaction when a move is undone minutes later: the patient who was never told of
  the time taken back need not hear of the way back either.
- `slot_freed()` runs the subscribers after the commit (they must see the freed time),
  each on its own (`robust`): a failure there is logged and never undoes the patient's
  cancellation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import transaction

_changed_subscribers: list[Callable[[list[int]], None]] = []
_freed_subscribers: list[Callable[[], None]] = []
_taken_back_subscribers: list[Callable[[int, datetime], None]] = []
# Per thread, as Django's database connections are: the ids gathered by the innermost
# `announced_together` block, or None when changes are announced at once.
_gathering = threading.local()


def on_appointments_changed(subscriber: Callable[[list[int]], None]) -> None:
    if subscriber not in _changed_subscribers:
        _changed_subscribers.append(subscriber)


def on_slot_freed(subscriber: Callable[[], None]) -> None:
    if subscriber not in _freed_subscribers:
        _freed_subscribers.append(subscriber)


def appointments_changed(appointment_ids: Iterable[int]) -> None:
    ids = list(appointment_ids)
    gathered = getattr(_gathering, "ids", None)
    if gathered is not None:
        gathered.update(ids)
        return
    for subscriber in _changed_subscribers:
        subscriber(ids)


@contextmanager
def announced_together() -> Iterator[None]:
    """Announce the appointments changed inside the block once, when it ends without an
    error. Must run inside the caller's transaction, so nothing commits unplanned; an
    id whose change was rolled back to a savepoint is announced all the same, which the
    subscribers take as "nothing changed" (re-planning is idempotent)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("announced_together() must run inside a transaction.")
    outer = getattr(_gathering, "ids", None)
    _gathering.ids = set()
    try:
        yield
        ids = sorted(_gathering.ids)
    finally:
        inner, _gathering.ids = _gathering.ids, outer
    if outer is not None:
        outer.update(inner)
    elif ids:
        appointments_changed(ids)


def slot_freed() -> None:
    for subscriber in _freed_subscribers:
        transaction.on_commit(subscriber, robust=True)


def on_move_taken_back(subscriber: Callable[[int, datetime], None]) -> None:
    if subscriber not in _taken_back_subscribers:
        _taken_back_subscribers.append(subscriber)


def move_taken_back(appointment_id: int, *, untold_start: datetime) -> None:
    for subscriber in _taken_back_subscribers:
        subscriber(appointment_id, untold_start)
