"""Rows as the JSON the API returns; the OpenAPI schemas in openapi.py describe these."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from careline.analytics.experiments import ArmResult, ExperimentResult, TouchResult
from careline.analytics.metrics import BeforeAfter, EngagementRow, MetricsRow
from careline.broadcasts.models import Broadcast
from careline.broadcasts.sending import Preview
from careline.conversations.models import Conversation, ConversationReply, InboundMessage
from careline.integrations.models import Hl7Feed
from careline.messaging.models import Experiment, MessageState, OutboundMessage, ReminderRule
from careline.messaging.segments import SegmentCount
from careline.scheduling.appointments import Slot
from careline.scheduling.models import Appointment, AppointmentEvent

THREAD_LENGTH = 200  # latest texts shown with a conversation


def machine_key(label: str) -> str:
    """'shares a number with another recipient' -> 'shares_a_number_with_another_recipient'."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def conversation(c: Conversation) -> dict[str, Any]:
    """Needs `practice` and `assigned_to` selected with the row."""
    return {
        "id": c.pk,
        "practice": {"id": c.practice.pk, "name": c.practice.name} if c.practice else None,
        "patient_id": c.patient_id,
        "phone": c.phone,
        "queue": c.queue,
        "state": c.state,
        "urgent": c.urgent,
        "unread_count": c.unread_count,
        "assigned_to": c.assigned_to.get_username() if c.assigned_to else None,
        "created_at": c.created_at,
        "opened_at": c.opened_at,
        "last_patient_message_at": c.last_patient_message_at,
        "first_staff_reply_at": c.first_staff_reply_at,
        "last_staff_reply_at": c.last_staff_reply_at,
        "closed_at": c.closed_at,
    }


def inbound(m: InboundMessage) -> dict[str, Any]:
    return {
        "direction": "inbound",
        "id": m.pk,
        "at": m.received_at,
        "body": m.body,
        "intent": m.intent or None,
        "author": None,
        "delivery_state": None,
    }


def reply(r: ConversationReply) -> dict[str, Any]:
    """Needs `message` and `author` selected with the row."""
    return {
        "direction": "outbound",
        "id": r.message_id,
        "at": r.created_at,
        "body": r.message.body,
        "intent": None,
        # Blank author: an automatic answer (after hours, emergency).
        "author": r.author.get_username() if r.author else None,
        "delivery_state": r.message.state,
    }


def segments(count: SegmentCount) -> dict[str, Any]:
    return {
        "encoding": count.encoding,
        "characters": count.characters,
        "segments": count.segments,
        "warning": count.warning,
    }


def broadcast(b: Broadcast) -> dict[str, Any]:
    """Needs `practices` prefetched and `created_by` selected with the row."""
    return {
        "id": b.pk,
        "name": b.name,
        "state": b.state,
        "body_en": b.body_en,
        "body_es": b.body_es,
        "practice_ids": sorted(p.pk for p in b.practices.all()),
        "audience": b.audience,
        "send_at": b.send_at,
        "recipients": b.recipients,
        "excluded": {machine_key(k): n for k, n in b.excluded.items()},
        "created_by": b.created_by.get_username() if b.created_by else None,
        "created_at": b.created_at,
    }


def delivery(report: dict[str, int]) -> dict[str, Any]:
    """careline.broadcasts.sending.delivery_report keyed by state values and reasons."""
    by_label = {state.label: state.value for state in MessageState}
    suppressed = f"{MessageState.SUPPRESSED.label}: "
    by_state: dict[str, int] = {}
    suppressed_by_reason: dict[str, int] = {}
    for label, n in report.items():
        if label.startswith(suppressed):
            suppressed_by_reason[label.removeprefix(suppressed)] = n
        else:
            by_state[by_label[label]] = n
    return {"by_state": by_state, "suppressed_by_reason": suppressed_by_reason}


def preview(p: Preview) -> dict[str, Any]:
    return {
        "reach": p.reach,
        "excluded": {machine_key(k): n for k, n in p.excluded.items()},
        "waiting_for_sending_hours": p.waiting_for_morning,
        "by_language": p.by_language,
    }


def reminder_rule(rule: ReminderRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "practice_id": rule.practice_id,
        "appointment_type_id": rule.appointment_type_id,
        "offsets_minutes": rule.offsets_minutes,
        "channel": rule.channel,
        "stop_when_confirmed": rule.stop_when_confirmed,
        "send_event_messages": rule.send_event_messages,
        "active": rule.active,
        "updated_at": rule.updated_at,
    }


def planned_message(m: OutboundMessage) -> dict[str, Any]:
    return {
        "id": m.pk,
        "kind": m.kind,
        "step": m.step_key,
        "channel": m.channel,
        "visit_start": m.visit_start,
        "due_at": m.due_at,
        "expires_at": m.expires_at,
    }


def metrics_row(row: MetricsRow) -> dict[str, Any]:
    key = row.key
    if isinstance(key, datetime):
        key = key.date()
    return {
        "key": key.isoformat() if isinstance(key, date) else key,
        "label": row.label,
        "appointments": row.appointments,
        "due": row.due,
        "no_shows": row.no_shows,
        "cancellations": row.cancellations,
        "late_cancellations": row.late_cancellations,
        "confirmed": row.confirmed,
        "calls_avoided": row.calls_avoided,
        "no_show_rate": row.no_show_rate,
        "cancellation_rate": row.cancellation_rate,
        "late_cancellation_rate": row.late_cancellation_rate,
        "confirmation_rate": row.confirmation_rate,
    }


def before_after(result: BeforeAfter) -> dict[str, Any]:
    c = result.comparison
    return {
        "practice": {"id": result.practice.pk, "name": result.practice.name},
        "go_live": result.go_live,
        "before": {
            "due": result.before_due,
            "no_shows": result.before_no_shows,
            "no_show_rate": c.before_rate,
        },
        "after": {
            "due": result.after_due,
            "no_shows": result.after_no_shows,
            "no_show_rate": c.after_rate,
        },
        "difference": c.difference,
        "difference_95ci": [c.difference_low, c.difference_high],
        "relative_risk": c.relative_risk,
        "enough_data": c.enough_data,
    }


def hl7_feed(feed: Hl7Feed) -> dict[str, Any]:
    """Needs `organization` selected with the row (for the default namespace)."""
    return {
        "id": feed.pk,
        "name": feed.name,
        "active": feed.active,
        "processing_id": feed.processing_id,
        "time_zone": feed.time_zone,
        "identifier_system": feed.namespace,
        "location_map": dict(sorted(feed.location_map.items())),
        "sending_application": feed.routing_application,
    }


def appointment(a: Appointment) -> dict[str, Any]:
    return {
        "id": a.pk,
        "practice_id": a.practice_id,
        "provider_id": a.provider_id,
        "patient_id": a.patient_id,
        "appointment_type_id": a.appointment_type_id,
        "start": a.start,
        "end": a.end,
        "status": a.status,
        "confirmed_at": a.confirmed_at,
        "status_source": a.status_source,
        "status_changed_at": a.status_changed_at,
    }


def appointment_change(e: AppointmentEvent, undo_until: datetime | None) -> dict[str, Any]:
    """Needs `changed_by` selected with the row."""
    return {
        "id": e.pk,
        "from_status": e.from_status or None,
        "to_status": e.to_status,
        "old_start": e.old_start,
        "new_start": e.new_start,
        "source": e.source,
        "changed_by": e.changed_by.get_username() if e.changed_by else None,
        "note": e.note,
        "occurred_at": e.occurred_at,
        "undo_until": undo_until,
    }


def open_time(slot: Slot) -> dict[str, Any]:
    return {"start": slot.start, "end": slot.end, "provider_id": slot.provider_id}


def experiment(e: Experiment) -> dict[str, Any]:
    """Needs `practice` and `created_by` selected with the row."""
    return {
        "id": e.pk,
        "name": e.name,
        "practice": {"id": e.practice.pk, "name": e.practice.name} if e.practice else None,
        "withheld_step": e.withheld_step,
        "share_percent": e.share_basis_points / 100,
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "running": e.ended_at is None,
        "created_by": e.created_by.get_username() if e.created_by else None,
    }


def _arm(result: ArmResult, patients: int) -> dict[str, Any]:
    return {
        "patients": patients,
        "visits": result.visits,
        "with_outcome": result.due,
        "no_shows": result.no_shows,
        "no_show_rate": result.rate,
    }


def experiment_results(result: ExperimentResult) -> dict[str, Any]:
    balance, c = result.balance, result.comparison
    return {
        "arm_balance": {
            "patients": {
                "control": balance.control_patients,
                "withheld": balance.withheld_patients,
            },
            "expected": {
                "control": balance.expected_control,
                "withheld": balance.expected_withheld,
            },
            "visits": {"control": balance.control_visits, "withheld": balance.withheld_visits},
            "withheld_share": balance.withheld_share,
            "configured_withheld_share": balance.expected_withheld_share,
            "chi_square": balance.chi_square,
            "p_value": balance.p_value,
            "summary": balance.summary,
        },
        "results": {
            "control": _arm(result.control, balance.control_patients),
            "withheld": _arm(result.withheld, balance.withheld_patients),
            "difference": c.difference if result.enough_data else None,
            "difference_ci95": [c.difference_low, c.difference_high]
            if result.enough_data
            else None,
            "fisher_p_value": result.p_value,
            "enough_data": result.enough_data,
            "verdict": result.verdict,
        },
    }


def engagement_row(row: EngagementRow) -> dict[str, Any]:
    return {
        "practice": {"id": row.practice_id, "name": row.label},
        "texts_finished": row.texts_finished,
        "texts_failed": row.texts_failed,
        "reminded_visits": row.reminded_visits,
        "visits_with_reply": row.visits_with_reply,
        "numbers_texted": row.numbers_texted,
        "opt_outs": row.opt_outs,
        "slots_freed": row.slots_freed,
        "slots_refilled": row.slots_refilled,
        "median_first_answer_minutes": row.median_first_answer_minutes,
        "delivery_failure_rate": row.delivery_failure_rate,
        "reply_rate": row.reply_rate,
        "opt_out_rate": row.opt_out_rate,
        "refill_rate": row.refill_rate,
    }


def extra_touch(result: TouchResult) -> dict[str, Any]:
    policy, c = result.policy, result.comparison

    def arm(a) -> dict[str, Any]:
        return {"visits": a.visits, "due": a.due, "no_shows": a.no_shows, "no_show_rate": a.rate}

    return {
        "id": policy.pk,
        "practice": None
        if policy.practice is None
        else {"id": policy.practice.pk, "name": policy.practice.name},
        "threshold": policy.threshold,
        "touch_share": policy.touch_basis_points / 10_000,
        "started_at": policy.started_at,
        "ended_at": policy.ended_at,
        "touch": arm(result.touch),
        "no_touch": arm(result.no_touch),
        "difference": c.difference,
        "difference_95ci": [c.difference_low, c.difference_high],
        "p_value": result.p_value,
        "enough_data": result.enough_data,
        "verdict": result.verdict,
    }
