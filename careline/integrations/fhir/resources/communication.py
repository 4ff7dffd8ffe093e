"""Texts as FHIR Communication resources: the outbox (to patients) and inbound texts (from them).

Ids carry the direction, `out-<n>` and `in-<n>`, because the two live in separate tables.

Both tables keep a version and a change time (messaging.outbox and conversations.inbound
stamp them from careline.versions' change clock), so Communication is a change feed like
the other versioned types: `_lastUpdated`, `_sort=_lastUpdated` ordered by (change time,
direction, id) across the two tables, meta.versionId and an ETag.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from heapq import merge
from typing import Any

from django.db.models import Q, QuerySet

from careline.conversations.models import InboundMessage
from careline.integrations.fhir.errors import FhirError, not_found
from careline.integrations.fhir.resources.handler import (
    LAST_UPDATED,
    Context,
    Handler,
    SearchParameter,
    filter_last_updated,
    iso,
    settled_horizon,
)
from careline.integrations.fhir.search import date_q, parse_pk, reference_pk, search_parameter
from careline.messaging.models import Channel, MessageState, OutboundMessage

KIND_SYSTEM = "urn:careline:message-kind"
INTENT_SYSTEM = "urn:careline:inbound-intent"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
MEDIUM = {Channel.SMS: "SMSWRIT", Channel.EMAIL: "EMAILWRIT"}
STATUS = {
    MessageState.SCHEDULED: "preparation",
    MessageState.SENDING: "in-progress",
    MessageState.SENT: "in-progress",
    MessageState.DELIVERED: "completed",
    MessageState.UNDELIVERED: "not-done",
    MessageState.FAILED: "not-done",
    MessageState.SUPPRESSED: "not-done",
    MessageState.CANCELLED: "not-done",
}
NOTHING = Q(pk__in=[])
# Not Q(): an empty Q vanishes when ORed with another.
EVERYTHING = Q(pk__isnull=False)

# A filter yields (outbound condition, inbound condition); NOTHING rules a table out.
Conditions = tuple[Q, Q]
# The change feed orders changes made at one time by direction, then id.
DIRECTIONS = ("out", "in")


class CommunicationHandler(Handler):
    resource_type = "Communication"
    writable = False
    documentation = (
        "Texts Careline sent (id out-<n>: recipient the Patient, sender the Location, about "
        "the Appointment) and texts patients sent in (id in-<n>: sender the Patient, "
        "recipient the Location, about the Appointment it was read as answering). "
        "Read-only: texts are sent through Careline's own rules."
    )
    search_parameters = {
        "_id": SearchParameter("token", "out-<n> or in-<n>."),
        "_lastUpdated": LAST_UPDATED,
        "patient": SearchParameter("reference", "Patient/<id>, either direction."),
        "subject": SearchParameter("reference", "Patient/<id>, either direction."),
        "recipient": SearchParameter("reference", "Patient/<id> (sent) or Location/<id>."),
        "sender": SearchParameter("reference", "Patient/<id> (received) or Location/<id>."),
        "about": SearchParameter("reference", "Appointment/<id>: texts about that visit."),
        "sent": SearchParameter("date", "When sent (for inbound: when received)."),
        "status": SearchParameter("token", "preparation, in-progress, completed, not-done."),
    }

    def _outbound(self, ctx: Context) -> QuerySet:
        return OutboundMessage.objects.filter(organization=ctx.organization).order_by("id")

    def _inbound(self, ctx: Context) -> QuerySet:
        return (
            InboundMessage.objects.filter(organization=ctx.organization)
            .prefetch_related("patients")
            .order_by("id")
        )

    def get(self, ctx: Context, resource_id: str) -> Any:
        direction, _, number = resource_id.partition("-")
        pk = parse_pk(number)
        qs = {"out": self._outbound(ctx), "in": self._inbound(ctx)}.get(direction)
        found = qs.filter(pk=pk).first() if qs is not None and pk else None
        if found is None:
            raise not_found("Communication", resource_id)
        return found

    def feed_key(self, item: Any) -> str:
        return _resource_id(item)

    def read_feed_key(self, raw: str) -> tuple[int, int] | None:
        direction, _, number = raw.partition("-")
        pk = parse_pk(number)
        if direction not in DIRECTIONS or pk is None:
            return None
        return DIRECTIONS.index(direction), pk

    def search(
        self,
        ctx: Context,
        params: dict[str, list[str]],
        offset: int,
        count: int,
        *,
        changed_after: tuple[datetime, Any] | None = None,
    ) -> tuple[int, list[Any]]:
        """`changed_after` (last_updated, (direction, id)) sorts both tables' texts by
        change and pages from that key."""
        outbound, inbound = self._outbound(ctx), self._inbound(ctx)
        for name, values in params.items():
            build = FILTERS[name]
            for value in values:
                q_out, q_in = NOTHING, NOTHING
                with search_parameter(name):
                    for one in value.split(","):
                        one_out, one_in = build(one.strip())
                        q_out, q_in = q_out | one_out, q_in | one_in
                outbound, inbound = outbound.filter(q_out), inbound.filter(q_in)
        if changed_after is not None or "_lastUpdated" in params:
            # Only what committed along with every earlier change of either table.
            horizon = settled_horizon(ctx, OutboundMessage, InboundMessage)
            if horizon is not None:
                outbound = outbound.filter(last_updated__lt=horizon)
                inbound = inbound.filter(last_updated__lt=horizon)
        out_total, in_total = outbound.count(), inbound.count()
        if not count:
            return out_total + in_total, []
        if changed_after is not None:
            return out_total + in_total, _changed_after(outbound, inbound, changed_after, count)
        items: list[Any] = list(outbound[offset : offset + count])
        if len(items) < count:
            start = max(0, offset - out_total)
            items += list(inbound[start : start + count - len(items)])
        return out_total + in_total, items

    def render(self, ctx: Context, message: Any) -> dict[str, Any]:
        if isinstance(message, OutboundMessage):
            return _render_outbound(message)
        return _render_inbound(message)


def _resource_id(message: Any) -> str:
    return f"out-{message.pk}" if isinstance(message, OutboundMessage) else f"in-{message.pk}"


def _after(at: datetime, direction: int, cursor: tuple[int, int]) -> Q:
    """The rows of one direction that come after `cursor` ((direction, id) at `at`) in
    (last_updated, direction, id) order."""
    cursor_direction, pk = cursor
    later = Q(last_updated__gt=at)
    if direction > cursor_direction:
        return later | Q(last_updated=at)
    if direction == cursor_direction:
        return later | Q(last_updated=at, id__gt=pk)
    return later


def _changed_after(
    outbound: QuerySet, inbound: QuerySet, changed_after: tuple[datetime, Any], count: int
) -> list[Any]:
    """The next `count` texts of both tables after the cursor, in change order."""
    at, key = changed_after
    # The feed's start carries no direction: everything after its time.
    cursor = key if isinstance(key, tuple) else (0, 0)
    pages = [
        list(qs.filter(_after(at, direction, cursor)).order_by("last_updated", "id")[:count])
        for direction, qs in enumerate((outbound, inbound))
    ]
    ordered = merge(
        *(
            [((m.last_updated, direction, m.pk), m) for m in page]
            for direction, page in enumerate(pages)
        ),
        key=lambda pair: pair[0],
    )
    return [message for _, message in ordered][:count]


def _render_outbound(message: OutboundMessage) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": f"out-{message.pk}",
        "status": STATUS.get(message.state, "unknown"),
    }
    reason = message.reason or message.error_message
    if reason and resource["status"] == "not-done":
        resource["statusReason"] = {"text": reason}
    resource["category"] = [
        {
            "coding": [
                {"system": KIND_SYSTEM, "code": message.kind, "display": message.get_kind_display()}
            ]
        }
    ]
    resource["medium"] = [
        {"coding": [{"system": PARTICIPATION_MODE, "code": MEDIUM.get(message.channel, "WRITTEN")}]}
    ]
    if message.patient_id:
        resource["subject"] = {"reference": f"Patient/{message.patient_id}"}
        resource["recipient"] = [{"reference": f"Patient/{message.patient_id}"}]
    if message.appointment_id:
        resource["about"] = [{"reference": f"Appointment/{message.appointment_id}"}]
    if message.sent_at:
        resource["sent"] = iso(message.sent_at)
    if message.state == MessageState.DELIVERED and message.finished_at:
        resource["received"] = iso(message.finished_at)
    if message.practice_id:
        resource["sender"] = {"reference": f"Location/{message.practice_id}"}
    if message.body:
        resource["payload"] = [{"contentString": message.body}]
    return resource


def _render_inbound(message: InboundMessage) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": f"in-{message.pk}",
        "status": "completed",
    }
    if message.intent:
        resource["category"] = [
            {
                "coding": [
                    {
                        "system": INTENT_SYSTEM,
                        "code": message.intent,
                        "display": message.get_intent_display(),
                    }
                ]
            }
        ]
    resource["medium"] = [{"coding": [{"system": PARTICIPATION_MODE, "code": "SMSWRIT"}]}]
    patients = sorted(message.patients.all(), key=lambda p: p.pk)
    if patients:
        resource["subject"] = {"reference": f"Patient/{patients[0].pk}"}
        resource["sender"] = {"reference": f"Patient/{patients[0].pk}"}
    if message.appointment_id:
        resource["about"] = [{"reference": f"Appointment/{message.appointment_id}"}]
    resource["sent"] = iso(message.received_at)
    resource["received"] = iso(message.received_at)
    if message.practice_id:
        resource["recipient"] = [{"reference": f"Location/{message.practice_id}"}]
    if message.body:
        resource["payload"] = [{"contentString": message.body}]
    return resource


def _reference(value: str, *types: str) -> tuple[str, int]:
    for resource_type in types:
        pk = reference_pk(value, resource_type)
        # A bare id is only unambiguous when one type is possible.
        if pk and (len(types) == 1 or "/" in value):
            return resource_type, pk
    raise FhirError(400, f"Expected a reference to {' or '.join(types)}, got '{value}'.")


def _from_patient(pk: int) -> Q:
    return Q(
        pk__in=InboundMessage.patients.through.objects.filter(patient_id=pk).values(
            "inboundmessage_id"
        )
    )


def _filter_id(value: str) -> Conditions:
    direction, _, number = value.partition("-")
    pk = parse_pk(number)
    if not pk or direction not in ("out", "in"):
        return NOTHING, NOTHING
    return (Q(pk=pk), NOTHING) if direction == "out" else (NOTHING, Q(pk=pk))


def _filter_patient(value: str) -> Conditions:
    _, pk = _reference(value, "Patient")
    return Q(patient_id=pk), _from_patient(pk)


def _filter_recipient(value: str) -> Conditions:
    kind, pk = _reference(value, "Patient", "Location")
    return (Q(patient_id=pk), NOTHING) if kind == "Patient" else (NOTHING, Q(practice_id=pk))


def _filter_sender(value: str) -> Conditions:
    kind, pk = _reference(value, "Patient", "Location")
    return (NOTHING, _from_patient(pk)) if kind == "Patient" else (Q(practice_id=pk), NOTHING)


def _filter_about(value: str) -> Conditions:
    _, pk = _reference(value, "Appointment")
    return Q(appointment_id=pk), Q(appointment_id=pk)


def _filter_sent(value: str) -> Conditions:
    return date_q("sent_at", value, UTC), date_q("received_at", value, UTC)


def _filter_last_updated(value: str) -> Conditions:
    return filter_last_updated(value), filter_last_updated(value)


def _filter_status(value: str) -> Conditions:
    states = [state for state, status in STATUS.items() if status == value]
    if not states and value != "completed":
        raise FhirError(400, f"'{value}' is not a Communication status Careline reports.")
    return Q(state__in=states), (EVERYTHING if value == "completed" else NOTHING)


FILTERS: dict[str, Callable[[str], Conditions]] = {
    "_id": _filter_id,
    "_lastUpdated": _filter_last_updated,
    "patient": _filter_patient,
    "subject": _filter_patient,
    "recipient": _filter_recipient,
    "sender": _filter_sender,
    "about": _filter_about,
    "sent": _filter_sent,
    "status": _filter_status,
}
