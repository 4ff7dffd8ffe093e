"""Versions of the records outside systems pull as a change feed (FHIR Patient,
Appointment, Practitioner, Location, Schedule and Communication): the clock that stamps a
change's `last_updated`, and a row's snapshot.

A client polls `_lastUpdated=gt<the newest time it has seen>`. That only sees every change
once if no change that commits later carries a time the client has already read past.
SQLite runs one write transaction at a time, and a change is stamped inside it, so times
follow commit order there. On PostgreSQL writers run side by side: each holds a *shared*
advisory lock per organization and table from its stamp until it commits (writers never
wait for each other), and the stamp is the database's clock. A change-feed read first
takes the same lock *exclusively* for an instant — waiting out the writers in flight —
and notes the database's time: every change stamped before that time has committed, so
the read returns only those (`settled_before`). Changes in one transaction share a time;
clients page ties with the Bundle's next link (sorted by last_updated, then id).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import Max
from django.utils import timezone

# The first key of the advisory lock: "the change clock", apart from any other lock.
_LOCK_SPACE = 0x0C4A7

M = TypeVar("M", bound=models.Model)
# Per thread (as Django's connections are): the stamps of a `one_time_per_transaction`
# block, by model and organization, or None.
_shared = threading.local()


@contextmanager
def one_time_per_transaction() -> Iterator[None]:
    """Inside the block, every change of a model's rows in one organization gets the
    first one's stamp (changes in one transaction share a time, as the docstring above
    allows): one clock reading, and on PostgreSQL one lock, per model and organization
    instead of one per row. The block must lie inside a single transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("one_time_per_transaction must run inside a transaction")
    outer = getattr(_shared, "stamps", None)
    if outer is None:
        _shared.stamps = {}
    try:
        yield
    finally:
        if outer is None:
            _shared.stamps = None


def change_stamp(model: type[models.Model], organization_id: int) -> datetime:
    """The time to stamp a change of `model` rows in this organization with: now, after
    every time already stored. Must run inside the change's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("change_stamp must run inside the change's transaction")
    shared = getattr(_shared, "stamps", None)
    key = (model._meta.label, organization_id)
    if shared is not None and key in shared:
        return shared[key]
    now = _new_stamp(model, organization_id)
    if shared is not None:
        shared[key] = now
    return now


def change_stamp_for(model: type[models.Model], organization_ids: Iterable[int]) -> datetime:
    """One time for a set-based statement that changes `model` rows of several
    organizations (a planning chunk, a worker's batch): each organization's stamp is taken
    (on PostgreSQL with its lock, held to commit) and the latest is used for all, which is
    after every time stored in each. Must run inside the change's transaction."""
    stamps = [change_stamp(model, org) for org in sorted(set(organization_ids))]
    if not stamps:
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("change_stamp_for must run inside the change's transaction")
        # No organization's rows can change: the value is never stored.
        return timezone.now()
    return max(stamps)


def _new_stamp(model: type[models.Model], organization_id: int) -> datetime:
    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock_shared(%s, %s)", _lock_key(model, organization_id)
            )
            # One clock for every web and worker process: the database's.
            cursor.execute("SELECT clock_timestamp()")
            now = cursor.fetchone()[0]
    newest = model._default_manager.filter(organization_id=organization_id).aggregate(
        newest=Max("last_updated")
    )["newest"]
    if newest is not None and now <= newest:
        # The clock stepped back (or two changes landed in one microsecond): stay ahead.
        now = newest + timedelta(microseconds=1)
    return now


def settled_before(model: type[models.Model], organization_id: int) -> datetime | None:
    """A time before which every change of `model` rows in this organization has committed
    (None on SQLite, where all stored changes are settled). A change-feed read returns only
    changes stamped before it; the rest come with the next poll."""
    if connection.vendor != "postgresql":
        return None
    with transaction.atomic(), connection.cursor() as cursor:
        # A writer in flight holds the shared lock until it commits: waiting for it here is
        # what makes the time below safe. Bounded, so a long import cannot stall readers
        # (nor the writers queued behind them) for long.
        cursor.execute("SET LOCAL lock_timeout = '10s'")
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _lock_key(model, organization_id))
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def _lock_key(model: type[models.Model], organization_id: int) -> list[int]:
    table_key = zlib.crc32(model._meta.db_table.encode()) & 0x7FFF
    return [_LOCK_SPACE, (table_key << 16) ^ (organization_id & 0xFFFF)]


def snapshot(obj: models.Model) -> dict[str, Any]:
    """The row's stored fields as JSON (what a version keeps)."""
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        value = getattr(obj, field.attname)
        data[field.attname] = None if value is None else field.value_to_string(obj)
    return data


def restore(model: type[M], data: dict[str, Any]) -> M:
    """An unsaved instance holding a snapshot's fields (for rendering an old version)."""
    values = {}
    for field in model._meta.concrete_fields:
        if field.attname in data:
            raw = data[field.attname]
            values[field.attname] = None if raw is None else field.to_python(raw)
    return model(**values)


def stamp(obj: models.Model) -> None:
    """Give `obj` (locked, or new and unsaved) its next version and a change time, before
    its owner saves it. Must run inside the change's transaction."""
    at = change_stamp(type(obj), obj.organization_id)  # type: ignore[attr-defined]
    stored = None
    if obj.pk is not None:
        stored = (
            type(obj)._default_manager.filter(pk=obj.pk).values_list("version", flat=True).first()
        )
    obj.version = (stored or 0) + 1  # type: ignore[attr-defined]
    obj.last_updated = at  # type: ignore[attr-defined]
