"""The OpenAPI 3.1 document of /api/v1/, written by hand next to the code it describes.

tests/api/test_openapi.py validates it with openapi-spec-validator, checks that every route
of the urlconf and each of its methods is here, and that responses match these schemas.
"""

from __future__ import annotations

from typing import Any

from careline.analytics.glossary import RATES
from careline.analytics.metrics import DIMENSIONS
from careline.api.v1.http import DEFAULT_LIMIT, MAX_IDS, MAX_LIMIT
from careline.api.v1.representations import THREAD_LENGTH
from careline.broadcasts.models import Broadcast
from careline.conversations.inbox import MAX_REPLY_CHARACTERS
from careline.conversations.models import MAX_RESPONSE_MINUTES, ConversationState, Queue
from careline.integrations.models import ProcessingId
from careline.messaging.experiments import SHARE_PERCENT_RANGE
from careline.messaging.models import MAX_OFFSET_MINUTES, Channel, MessageKind, MessageState
from careline.patients.models import Language
from careline.scheduling import desk
from careline.scheduling.models import AppointmentStatus, ChangeSource


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    nullable = schema | {"type": [schema["type"], "null"]}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
        "description": f"The {what}'s id.",
    }


def _rate(key: str) -> dict[str, Any]:
    """A rate, described from careline.analytics.glossary (its one definition)."""
    rate = RATES[key]
    return RATE | {"description": f"{rate.counts} Out of: {rate.out_of}"}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0}
RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
MOMENT = {"type": "string", "format": "date-time"}
DAY = {"type": "string", "format": "date"}
BOOLEAN = {"type": "boolean"}
NUMBER = {"type": "number"}
COUNTS = {"type": "object", "additionalProperties": COUNT}
IDS = {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": MAX_IDS}

PAGING = [
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Rows per page.",
    ),
    _query("cursor", STRING, "Where the page starts; take it from the previous page's `next`."),
]
PRACTICE_FILTER = _query(
    "practice", {"type": "integer", "minimum": 1}, "Only this practice (its id)."
)

CONVERSATION: dict[str, Any] = {
    "id": INTEGER,
    "practice": _nullable(_ref("PracticeRef")),
    "patient_id": _nullable(INTEGER),
    "phone": STRING,
    "queue": {"type": "string", "enum": Queue.values},
    "state": {"type": "string", "enum": ConversationState.values},
    "urgent": BOOLEAN,
    "unread_count": COUNT,
    "assigned_to": _nullable(STRING) | {"description": "Username of the assignee."},
    "created_at": MOMENT,
    "opened_at": MOMENT,
    "last_patient_message_at": MOMENT,
    "first_staff_reply_at": _nullable(MOMENT),
    "last_staff_reply_at": _nullable(MOMENT),
    "closed_at": _nullable(MOMENT),
}

EXPERIMENT: dict[str, Any] = {
    "id": INTEGER,
    "name": STRING,
    "practice": _nullable(_ref("PracticeRef")),
    "withheld_step": STRING,
    "share_percent": NUMBER,
    "started_at": MOMENT,
    "ended_at": _nullable(MOMENT),
    "running": BOOLEAN,
    "created_by": _nullable(STRING),
}

BROADCAST: dict[str, Any] = {
    "id": INTEGER,
    "name": STRING,
    "state": {"type": "string", "enum": Broadcast.State.values},
    "body_en": STRING,
    "body_es": STRING,
    "practice_ids": {"type": "array", "items": INTEGER},
    "audience": {"type": "object", "description": "The audience as it was sent."},
    "send_at": MOMENT,
    "recipients": _nullable(COUNT),
    "excluded": COUNTS,
    "created_by": _nullable(STRING),
    "created_at": MOMENT,
}


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {
                        "type": "string",
                        "enum": [
                            "bad_request",
                            "unauthorized",
                            "forbidden",
                            "not_found",
                            "method_not_allowed",
                            "too_large",
                            "unsupported_media_type",
                            "invalid",
                            "internal_error",
                        ],
                    },
                    "message": STRING,
                    "fields": {
                        "type": "object",
                        "description": "For `invalid` bodies: what is wrong, by field path.",
                        "additionalProperties": {"type": "array", "items": STRING},
                    },
                },
                required=["code", "message"],
            )
        }
    ),
    "PracticeRef": _object({"id": INTEGER, "name": STRING}),
    "Conversation": _object(CONVERSATION),
    "Message": _object(
        {
            "direction": {"type": "string", "enum": ["inbound", "outbound"]},
            "id": INTEGER,
            "at": MOMENT,
            "body": STRING,
            "intent": _nullable(STRING)
            | {"description": "Inbound: what Careline read in the text."},
            "author": _nullable(STRING)
            | {"description": "Outbound: who answered; null for an automatic answer."},
            "delivery_state": _nullable({"type": "string", "enum": MessageState.values})
            | {"description": "Outbound: the text's state in the outbox."},
        }
    ),
    "ConversationDetail": _object(
        CONVERSATION
        | {
            "messages": {
                "type": "array",
                "items": _ref("Message"),
                "description": f"The latest {THREAD_LENGTH} texts both ways, oldest first.",
            },
            "older_messages": {
                "type": "boolean",
                "description": "Whether older texts exist beyond `messages`.",
            },
        }
    ),
    "ConversationPage": _object(
        {
            "data": {"type": "array", "items": _ref("Conversation")},
            "next": _nullable({"type": "string", "format": "uri"}),
        }
    ),
    "ReplyRequest": _object(
        {"body": {"type": "string", "minLength": 1, "maxLength": MAX_REPLY_CHARACTERS}}
    ),
    "ReplyResult": _object({"reply": _ref("Message"), "conversation": _ref("Conversation")}),
    "Audience": _object(
        {
            "practice_ids": IDS | {"minItems": 1, "description": "Patients of these practices."},
            "provider_ids": IDS | {"description": "Only patients booked with these providers."},
            "appointment_type_ids": IDS | {"description": "Only patients booked for these."},
            "appointments_from": DAY | {"description": "Only patients booked from this day."},
            "appointments_to": DAY | {"description": "…through this day (inclusive)."},
            "language": {"type": "string", "enum": ["", *Language.values]},
            "seen_since": DAY | {"description": "Only patients seen at the practices since."},
        },
        required=["practice_ids"],
    ),
    "BroadcastRequest": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 120},
            "body_en": {
                "type": "string",
                "minLength": 1,
                "description": "May use {first_name} and {practice}.",
            },
            "body_es": {"type": "string", "description": "Blank: Spanish speakers get English."},
            "send_at": MOMENT | {"description": "With its offset; omitted: now."},
            "audience": _ref("Audience"),
        },
        required=["name", "body_en", "audience"],
    ),
    "Segments": _object(
        {
            "encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]},
            "characters": COUNT,
            "segments": COUNT,
            "warning": STRING,
        }
    ),
    "BroadcastPreview": _object(
        {
            "reach": COUNT | {"description": "Texts that would be queued (one per number)."},
            "excluded": COUNTS
            | {
                "description": "Patients left out, by reason: opted_out, no_mobile_number, "
                "shares_a_number_with_another_recipient."
            },
            "waiting_for_sending_hours": COUNT
            | {"description": "Recipients whose texts wait for sending hours."},
            "by_language": COUNTS,
            "segments": _object({"en": _ref("Segments"), "es": _ref("Segments")}),
        }
    ),
    "Broadcast": _object(BROADCAST),
    "BroadcastDetail": _object(
        BROADCAST
        | {
            "delivery": _object(
                {
                    "by_state": {
                        "type": "object",
                        "properties": {s: COUNT for s in MessageState.values},
                        "additionalProperties": False,
                    },
                    "suppressed_by_reason": COUNTS,
                }
            )
        }
    ),
    "BroadcastPage": _object(
        {
            "data": {"type": "array", "items": _ref("Broadcast")},
            "next": _nullable({"type": "string", "format": "uri"}),
        }
    ),
    "ExperimentRequest": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 120},
            "practice_id": _nullable(INTEGER)
            | {"description": "One practice of the organization; null or omitted: every one."},
            "withheld_step": {
                "type": "string",
                "default": "all",
                "pattern": "^(all|reminder:[0-9]{1,6})$",
                "description": "'all' holds out every reminder and notice (a holdout); "
                "'reminder:4320' drops only that step (compares two cadences).",
            },
            "share_percent": {
                "type": "integer",
                "minimum": SHARE_PERCENT_RANGE[0],
                "maximum": SHARE_PERCENT_RANGE[1],
                "description": "Share of patients in the withheld arm.",
            },
        },
        required=["name", "share_percent"],
    ),
    "Experiment": _object(EXPERIMENT),
    "ExperimentDetail": _object(
        EXPERIMENT
        | {
            "arm_balance": _object(
                {
                    "patients": _object({"control": COUNT, "withheld": COUNT})
                    | {"description": "Patients per arm (the unit randomized)."},
                    "expected": _object({"control": NUMBER, "withheld": NUMBER})
                    | {"description": "Patients per arm the configured split expects."},
                    "visits": _object({"control": COUNT, "withheld": COUNT}),
                    "withheld_share": RATE,
                    "configured_withheld_share": RATE,
                    "chi_square": _nullable(NUMBER),
                    "p_value": RATE
                    | {"description": "Chi-square goodness of fit against the split."},
                    "summary": STRING,
                }
            ),
            "results": _object(
                {
                    "control": _ref("ExperimentArm"),
                    "withheld": _ref("ExperimentArm"),
                    "difference": _nullable(NUMBER)
                    | {"description": "No-show rate, withheld − control; null: too few yet."},
                    "difference_ci95": _nullable(
                        {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2}
                    ),
                    "fisher_p_value": RATE,
                    "enough_data": BOOLEAN,
                    "verdict": STRING,
                }
            ),
        }
    ),
    "ExperimentArm": _object(
        {
            "patients": COUNT,
            "visits": COUNT,
            "with_outcome": COUNT,
            "no_shows": COUNT,
            "no_show_rate": RATE,
        }
    ),
    "ExperimentPage": _object(
        {
            "data": {"type": "array", "items": _ref("Experiment")},
            "next": _nullable({"type": "string", "format": "uri"}),
        }
    ),
    "ReminderRule": _object(
        {
            "id": _nullable(INTEGER)
            | {"description": "null: no rule saved, Careline's built-in cadence applies."},
            "practice_id": _nullable(INTEGER),
            "appointment_type_id": _nullable(INTEGER),
            "offsets_minutes": {"type": "array", "items": INTEGER},
            "channel": {"type": "string", "enum": Channel.values},
            "stop_when_confirmed": BOOLEAN,
            "send_event_messages": BOOLEAN,
            "active": BOOLEAN,
            "updated_at": _nullable(MOMENT),
        }
    ),
    "ResponseLimits": _object(
        {
            "practice_id": _nullable(INTEGER)
            | {"description": "null: the organization's limits, for practices without their own."},
            "limits": {
                "type": "array",
                "items": _object(
                    {
                        "queue": {"type": "string", "enum": Queue.values},
                        "minutes": INTEGER | {"description": "The limit in force."},
                        "own": _nullable(INTEGER)
                        | {"description": "Set at this level; null: inherited."},
                        "inherited": INTEGER
                        | {
                            "description": "What applies without its own: the organization's "
                            "limit (for a practice), else Careline's default."
                        },
                    }
                ),
            },
        }
    ),
    "ResponseLimitsUpdate": _object(
        {
            "practice_id": _nullable(INTEGER)
            | {"description": "null or omitted: the organization's limits."},
            "minutes": {
                "type": "object",
                "propertyNames": {"enum": Queue.values},
                "additionalProperties": _nullable(
                    {"type": "integer", "minimum": 1, "maximum": MAX_RESPONSE_MINUTES}
                ),
                "description": "Queue name to whole minutes; null inherits again. Queues not "
                "named keep their limit.",
            },
        },
        required=["minutes"],
    ),
    "PlannedMessage": _object(
        {
            "id": INTEGER,
            "kind": {"type": "string", "enum": MessageKind.values},
            "step": STRING | {"description": "e.g. reminder:1440 (a day before) or booked."},
            "channel": {"type": "string", "enum": Channel.values},
            "visit_start": _nullable(MOMENT),
            "due_at": MOMENT | {"description": "When it goes out (sending hours permitting)."},
            "expires_at": _nullable(MOMENT),
        }
    ),
    "PlannedMessages": _object(
        {"appointment_id": INTEGER, "data": {"type": "array", "items": _ref("PlannedMessage")}}
    ),
    "Cadence": _object(
        {
            "default": _ref("ReminderRule"),
            "overrides": {
                "type": "array",
                "items": _ref("ReminderRule"),
                "description": "Rules for a practice and/or appointment type; read-only here.",
            },
        }
    ),
    "CadenceUpdate": _object(
        {
            "offsets_minutes": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": MAX_OFFSET_MINUTES},
                "uniqueItems": True,
                "description": "Minutes before the visit, e.g. [4320, 1440]; [] for none.",
            },
            "channel": {"type": "string", "enum": Channel.values, "default": "sms"},
            "stop_when_confirmed": BOOLEAN | {"default": True},
            "send_event_messages": BOOLEAN | {"default": True},
            "active": BOOLEAN | {"default": True},
        },
        required=["offsets_minutes"],
    ),
    "MetricsRow": _object(
        {
            "key": {
                "type": ["integer", "string", "null"],
                "description": "The group's id, or the period's first day for week/month.",
            },
            "label": STRING,
            "appointments": COUNT,
            "due": COUNT,
            "no_shows": COUNT,
            "cancellations": COUNT,
            "late_cancellations": COUNT,
            "confirmed": COUNT,
            "calls_avoided": COUNT,
            "no_show_rate": _rate("no_show_rate"),
            "cancellation_rate": _rate("cancellation_rate"),
            "late_cancellation_rate": _rate("late_cancellation_rate"),
            "confirmation_rate": _rate("confirmation_rate"),
        }
    ),
    "EngagementRow": _object(
        {
            "practice": _ref("PracticeRef"),
            "texts_finished": COUNT,
            "texts_failed": COUNT,
            "reminded_visits": COUNT,
            "visits_with_reply": COUNT,
            "numbers_texted": COUNT,
            "opt_outs": COUNT,
            "slots_freed": COUNT,
            "slots_refilled": COUNT,
            "median_first_answer_minutes": _nullable(NUMBER),
            "delivery_failure_rate": _rate("delivery_failure_rate"),
            "reply_rate": _rate("reply_rate"),
            "opt_out_rate": _rate("opt_out_rate"),
            "refill_rate": _rate("refill_rate"),
        }
    ),
    "EngagementReport": _object(
        {
            "from": DAY,
            "to": DAY,
            "data": {"type": "array", "items": _ref("EngagementRow")},
        }
    ),
    "AppointmentReport": _object(
        {
            "group_by": {"type": "string", "enum": list(DIMENSIONS)},
            "from": _nullable(DAY),
            "to": _nullable(DAY),
            "data": {"type": "array", "items": _ref("MetricsRow")},
        }
    ),
    "Period": _object({"due": COUNT, "no_shows": COUNT, "no_show_rate": RATE}),
    "BeforeAfter": _object(
        {
            "practice": _ref("PracticeRef"),
            "go_live": DAY,
            "before": _ref("Period"),
            "after": _ref("Period"),
            "difference": {"type": "number", "description": "After minus before no-show rate."},
            "difference_95ci": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
                "description": "Newcomb's 95% interval of the difference.",
            },
            "relative_risk": {"type": ["number", "null"]},
            "enough_data": BOOLEAN,
        }
    ),
    "ExtraTouchArm": _object(
        {"visits": COUNT, "due": COUNT, "no_shows": COUNT, "no_show_rate": RATE}
    ),
    "ExtraTouch": _object(
        {
            "id": INTEGER,
            "practice": _nullable(_ref("PracticeRef"))
            | {"description": "Null: every practice of the organization."},
            "threshold": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 1,
                "description": "No-show risk from which a visit is high-risk.",
            },
            "touch_share": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 1,
                "description": "Share of high-risk visits that get the extra reminder.",
            },
            "started_at": MOMENT,
            "ended_at": _nullable(MOMENT),
            "touch": _ref("ExtraTouchArm"),
            "no_touch": _ref("ExtraTouchArm"),
            "difference": {"type": "number", "description": "Touch minus no-touch no-show rate."},
            "difference_95ci": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
                "description": "Newcomb's 95% interval of the difference.",
            },
            "p_value": {"type": ["number", "null"], "description": "Fisher's exact test."},
            "enough_data": BOOLEAN,
            "verdict": STRING,
        }
    ),
    "ExtraTouchList": _object({"data": {"type": "array", "items": _ref("ExtraTouch")}}),
    "ExtraTouchRequest": _object(
        {
            "practice": _nullable(INTEGER) | {"description": "Null: every practice."},
            "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "touch_share": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 1,
                "default": 0.5,
            },
        },
        required=["threshold"],
    ),
    "BeforeAfterReport": _object(
        {
            "window_days": {"type": "integer", "minimum": 1},
            "data": {"type": "array", "items": _ref("BeforeAfter")},
        }
    ),
    "Hl7Feed": _object(
        {
            "id": INTEGER,
            "name": STRING | {"description": "Stored on the feed's visits as their system."},
            "active": BOOLEAN,
            "processing_id": {
                "type": "string",
                "enum": ProcessingId.values,
                "description": "MSH-11 the feed takes; other messages are refused with AR.",
            },
            "time_zone": STRING | {"description": "IANA zone of times sent without an offset."},
            "identifier_system": STRING | {"description": "Namespace (URI) of the feed's MRNs."},
            "location_map": {
                "type": "object",
                "additionalProperties": STRING,
                "description": "AIL-3 location code → practice code.",
            },
            "sending_application": STRING
            | {"description": "MSH-3 that routes messages to this feed."},
        }
    ),
    "Hl7FeedList": _object({"data": {"type": "array", "items": _ref("Hl7Feed")}}),
    "Hl7FeedRequest": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 60},
            "time_zone": {
                "type": "string",
                "maxLength": 64,
                "description": "IANA zone, e.g. America/Denver. Omitted: the zone the "
                "organization's practices share, else America/New_York.",
            },
            "identifier_system": {
                "type": "string",
                "maxLength": 255,
                "description": "URI, e.g. urn:oid:1.2.840.114350. Omitted: "
                "urn:careline:<organization>:<name>. Feeds sharing one share patients.",
            },
            "processing_id": {"type": "string", "enum": ProcessingId.values, "default": "P"},
            "location_map": {
                "type": "object",
                "additionalProperties": STRING,
                "description": "Location code → one of the organization's practice codes. A "
                "code that is itself a practice code needs no entry.",
            },
            "sending_application": {
                "type": "string",
                "maxLength": 180,
                "description": "MSH-3 routing here when a listener serves several feeds; "
                "omitted: the name.",
            },
        },
        required=["name"],
    ),
    "Appointment": _object(
        {
            "id": INTEGER,
            "practice_id": INTEGER,
            "provider_id": INTEGER,
            "patient_id": INTEGER,
            "appointment_type_id": INTEGER,
            "start": MOMENT,
            "end": MOMENT,
            "status": {"type": "string", "enum": AppointmentStatus.values},
            "confirmed_at": _nullable(MOMENT),
            "status_source": {"type": "string", "enum": ChangeSource.values},
            "status_changed_at": MOMENT,
        }
    ),
    "AppointmentChange": _object(
        {
            "id": INTEGER,
            "from_status": _nullable({"type": "string", "enum": AppointmentStatus.values}),
            "to_status": {"type": "string", "enum": AppointmentStatus.values},
            "old_start": _nullable(MOMENT),
            "new_start": _nullable(MOMENT),
            "source": {"type": "string", "enum": ChangeSource.values},
            "changed_by": _nullable(STRING) | {"description": "Username of who made it."},
            "note": STRING,
            "occurred_at": MOMENT,
            "undo_until": _nullable(MOMENT)
            | {"description": "Until when POST …/undo takes it back; null: it cannot be."},
        }
    ),
    "AppointmentChangeResult": _object(
        {"appointment": _ref("Appointment"), "change": _ref("AppointmentChange")}
    ),
    "AppointmentActionRequest": _object(
        {
            "action": {
                "type": "string",
                "enum": list(desk.ACTIONS),
                "description": "confirm, cancel (needs `reason`), reschedule (needs `start`), "
                "arrived (checked in), noshow.",
            },
            "reason": {
                "type": "string",
                "maxLength": desk.REASON_MAX_LENGTH,
                "description": "Why the visit is cancelled (required for cancel).",
            },
            "start": MOMENT
            | {"description": "The new start, with its offset (reschedule); an open time."},
            "provider_id": {
                "type": "integer",
                "minimum": 1,
                "description": "Reschedule to this provider of the practice; omitted: the same.",
            },
        },
        required=["action"],
    ),
    "AppointmentUndoRequest": _object(
        {
            "change_id": {
                "type": "integer",
                "minimum": 1,
                "description": "The change to take back; it must be the visit's latest.",
            }
        },
        required=[],
    ),
    "OpenTimes": _object(
        {
            "data": {
                "type": "array",
                "items": _object({"start": MOMENT, "end": MOMENT, "provider_id": INTEGER}),
            }
        }
    ),
    "Hl7FeedRemoval": _object(
        {
            "outcome": {
                "type": "string",
                "enum": ["deleted", "deactivated"],
                "description": "A feed with stored messages is deactivated, not deleted.",
            },
            "feed": _ref("Hl7Feed"),
        }
    ),
}

ERROR_DESCRIPTIONS = {
    400: "The query string, body syntax or cursor is wrong.",
    401: "No API key, not a valid one, or a revoked one.",
    403: "The key's service user is deactivated: no inbox actions or broadcasts.",
    404: "No such object in the key's organization.",
    405: "The method is not allowed; see the Allow header.",
    413: "The request body is too large.",
    415: "The body is not application/json.",
    422: "The body is well-formed but not valid; `fields` says where.",
}

_ID = "conversation_id"


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document.",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }
    },
    "/conversations": {
        "get": {
            "operationId": "listConversations",
            "summary": "Inbox conversations, most recent patient text first.",
            "parameters": [
                _query("state", {"type": "string", "enum": ConversationState.values}, "State."),
                _query("queue", {"type": "string", "enum": Queue.values}, "Queue."),
                PRACTICE_FILTER,
                *PAGING,
            ],
            "responses": {
                "200": _json(_ref("ConversationPage"), "A page of conversations."),
                **_errors(400, 401, 405),
            },
        }
    },
    "/conversations/{conversation_id}": {
        "get": {
            "operationId": "getConversation",
            "summary": "A conversation with its latest texts.",
            "parameters": [_path_id(_ID, "conversation")],
            "responses": {
                "200": _json(_ref("ConversationDetail"), "The conversation."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/conversations/{conversation_id}/reply": {
        "post": {
            "operationId": "replyToConversation",
            "summary": "Text the patient an answer, as the API key's service user.",
            "description": (
                "Queued in the outbox from the number the patient wrote to. The reply's author "
                "is the key's service user `api-<key name>-<prefix>`, which also becomes the "
                "assignee of an unassigned conversation, as when staff answer. Refused (422) "
                "when the number opted out of texts."
            ),
            "parameters": [_path_id(_ID, "conversation")],
            "requestBody": _body("ReplyRequest"),
            "responses": {
                "201": _json(_ref("ReplyResult"), "The reply, queued."),
                **_errors(400, 401, 403, 404, 405, 413, 415, 422),
            },
        }
    },
    "/conversations/{conversation_id}/close": {
        "post": {
            "operationId": "closeConversation",
            "summary": "Close the conversation; the patient's next text reopens it.",
            "parameters": [_path_id(_ID, "conversation")],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _object({})}},
            },
            "responses": {
                "200": _json(_ref("Conversation"), "The closed conversation."),
                **_errors(400, 401, 403, 404, 405, 413, 415, 422),
            },
        }
    },
    "/appointments/{appointment_id}": {
        "get": {
            "operationId": "getAppointment",
            "summary": "A visit and its status.",
            "parameters": [_path_id("appointment_id", "appointment")],
            "responses": {
                "200": _json(_ref("Appointment"), "The visit."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/appointments/{appointment_id}/actions": {
        "post": {
            "operationId": "actOnAppointment",
            "summary": "Confirm, cancel, reschedule, check in or mark a no-show (front desk).",
            "description": (
                "The same change a patient's reply makes: recorded in the visit's history "
                "(by the key's service user), reminders re-planned, the patient texted a "
                "cancellation or new-time notice, and the EHR told through the HL7 "
                "write-back. The change can be taken back with POST …/undo until "
                "`change.undo_until` (" + str(int(desk.UNDO_WINDOW.total_seconds() // 60)) + " "
                "minutes). Refused (422, naming the field) when the visit's status does not "
                "allow the act or the new time is not open."
            ),
            "parameters": [_path_id("appointment_id", "appointment")],
            "requestBody": _body("AppointmentActionRequest"),
            "responses": {
                "200": _json(_ref("AppointmentChangeResult"), "The changed visit."),
                **_errors(400, 401, 403, 404, 405, 413, 415, 422),
            },
        }
    },
    "/appointments/{appointment_id}/undo": {
        "post": {
            "operationId": "undoAppointmentChange",
            "summary": "Take back the visit's latest front-desk change, within minutes of it.",
            "description": (
                "Restores the status (and time and provider, for a move) the visit had "
                "before, through the same change path: the notice the undone change planned "
                "is withdrawn when it has not gone out, reminders are re-planned."
            ),
            "parameters": [_path_id("appointment_id", "appointment")],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("AppointmentUndoRequest")}},
            },
            "responses": {
                "200": _json(_ref("AppointmentChangeResult"), "The restored visit."),
                **_errors(400, 401, 403, 404, 405, 413, 415, 422),
            },
        }
    },
    "/appointments/{appointment_id}/open-times": {
        "get": {
            "operationId": "listOpenTimes",
            "summary": "Open times the visit could move to, soonest first.",
            "parameters": [
                _path_id("appointment_id", "appointment"),
                _query("from", DAY, "From this local day (default: now)."),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 20, "default": 8},
                    "How many.",
                ),
            ],
            "responses": {
                "200": _json(_ref("OpenTimes"), "Open times."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/broadcasts": {
        "get": {
            "operationId": "listBroadcasts",
            "summary": "Broadcasts, newest first.",
            "parameters": PAGING,
            "responses": {
                "200": _json(_ref("BroadcastPage"), "A page of broadcasts."),
                **_errors(400, 401, 405),
            },
        },
        "post": {
            "operationId": "createBroadcast",
            "summary": "Preview (dry_run=true) or queue a broadcast.",
            "description": (
                "With `dry_run=true` nothing is stored: the answer says how many patients the "
                "text would reach and who is left out and why. Otherwise one outbox row per "
                "reachable number is queued for `send_at`, created by the key's service user."
            ),
            "parameters": [
                _query("dry_run", {"type": "boolean", "default": False}, "Only preview.")
            ],
            "requestBody": _body("BroadcastRequest"),
            "responses": {
                "200": _json(_ref("BroadcastPreview"), "The preview (dry run)."),
                "201": _json(_ref("BroadcastDetail"), "The broadcast, queued.")
                | {"headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}},
                **_errors(400, 401, 403, 405, 413, 415, 422),
            },
        },
    },
    "/broadcasts/{broadcast_id}": {
        "get": {
            "operationId": "getBroadcast",
            "summary": "A broadcast with its delivery report.",
            "parameters": [_path_id("broadcast_id", "broadcast")],
            "responses": {
                "200": _json(_ref("BroadcastDetail"), "The broadcast."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/experiments": {
        "get": {
            "operationId": "listExperiments",
            "summary": "Reminder experiments, newest first.",
            "parameters": PAGING,
            "responses": {
                "200": _json(_ref("ExperimentPage"), "A page of experiments."),
                **_errors(400, 401, 405),
            },
        },
        "post": {
            "operationId": "createExperiment",
            "summary": "Start a reminder experiment now.",
            "description": (
                "Each patient's arm is drawn once, from a hash of the experiment and the "
                "patient, when one of their visits booked from now on is first planned while "
                "upcoming and reachable; all their visits in the experiment share it. A "
                "withheld visit of a holdout gets nothing planned."
            ),
            "requestBody": _body("ExperimentRequest"),
            "responses": {
                "201": _json(_ref("ExperimentDetail"), "The experiment, started.")
                | {"headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}},
                **_errors(400, 401, 403, 405, 413, 415, 422),
            },
        },
    },
    "/experiments/{experiment_id}": {
        "get": {
            "operationId": "getExperiment",
            "summary": "An experiment with its arm balance and results.",
            "parameters": [_path_id("experiment_id", "experiment")],
            "responses": {
                "200": _json(_ref("ExperimentDetail"), "The experiment."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/experiments/{experiment_id}/stop": {
        "post": {
            "operationId": "stopExperiment",
            "summary": "Stop assigning new visits; the arms drawn stay, for the results.",
            "parameters": [_path_id("experiment_id", "experiment")],
            "responses": {
                "200": _json(_ref("ExperimentDetail"), "The experiment, stopped."),
                **_errors(400, 401, 404, 405, 413, 415, 422),
            },
        }
    },
    "/appointments/{appointment_id}/planned-messages": {
        "get": {
            "operationId": "getPlannedMessages",
            "summary": "The texts planned for a visit and not sent yet, with their due times.",
            "description": "Follows rule changes at once: a changed cadence moves them.",
            "parameters": [_path_id("appointment_id", "appointment")],
            "responses": {
                "200": _json(_ref("PlannedMessages"), "The planned texts, soonest first."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/reminder-rules": {
        "get": {
            "operationId": "getReminderRules",
            "summary": "The organization's default reminder cadence, and its overrides.",
            "responses": {
                "200": _json(_ref("Cadence"), "The cadence."),
                **_errors(400, 401, 405),
            },
        },
        "put": {
            "operationId": "putReminderRules",
            "summary": "Replace the organization's default reminder cadence.",
            "description": "Omitted fields take their defaults. The not-yet-sent "
            "reminders of upcoming visits are re-planned at once; sent ones stay.",
            "requestBody": _body("CadenceUpdate"),
            "responses": {
                "200": _json(_ref("Cadence"), "The cadence, saved."),
                **_errors(400, 401, 405, 413, 415, 422),
            },
        },
    },
    "/response-limits": {
        "get": {
            "operationId": "getResponseLimits",
            "summary": "How long a text may wait in each inbox queue before its clock turns red.",
            "parameters": [
                _query(
                    "practice",
                    {"type": "integer", "minimum": 1},
                    "A practice's limits (its own, else the organization's); omitted: the "
                    "organization's.",
                )
            ],
            "responses": {
                "200": _json(_ref("ResponseLimits"), "The limits per queue."),
                **_errors(400, 401, 405),
            },
        },
        "put": {
            "operationId": "putResponseLimits",
            "summary": "Set the organization's or a practice's response-time limits.",
            "description": "The inbox clocks follow them at once.",
            "requestBody": _body("ResponseLimitsUpdate"),
            "responses": {
                "200": _json(_ref("ResponseLimits"), "The limits, saved."),
                **_errors(400, 401, 405, 413, 415, 422),
            },
        },
    },
    "/reports/appointments": {
        "get": {
            "operationId": "appointmentReport",
            "summary": "No-show, cancellation and confirmation figures, grouped.",
            "parameters": [
                _query(
                    "group_by",
                    {"type": "string", "enum": list(DIMENSIONS), "default": "practice"},
                    "How rows are grouped.",
                ),
                _query("from", DAY, "Visits from this day (UTC)."),
                _query("to", DAY, "Visits through this day (UTC, inclusive)."),
                PRACTICE_FILTER,
            ],
            "responses": {
                "200": _json(_ref("AppointmentReport"), "The report."),
                **_errors(400, 401, 405),
            },
        }
    },
    "/reports/engagement": {
        "get": {
            "operationId": "engagementReport",
            "summary": "Texting, reply, opt-out, waitlist and inbox figures per practice.",
            "description": "Texts, opt-outs, freed times and conversations of the period; "
            "each rate as defined in the analytics page's glossary.",
            "parameters": [
                _query("from", DAY, "From this day (UTC); omitted: 30 days before `to`."),
                _query("to", DAY, "Through this day (UTC, inclusive); omitted: today."),
                PRACTICE_FILTER,
            ],
            "responses": {
                "200": _json(_ref("EngagementReport"), "The report."),
                **_errors(400, 401, 405),
            },
        }
    },
    "/reports/before-after": {
        "get": {
            "operationId": "beforeAfterReport",
            "summary": "No-show rate before and after each practice's go-live date.",
            "description": "Practices without a go-live date are left out.",
            "parameters": [
                _query(
                    "window_days",
                    {"type": "integer", "minimum": 1, "maximum": 3650, "default": 180},
                    "Days compared on each side of the go-live date.",
                ),
                PRACTICE_FILTER,
            ],
            "responses": {
                "200": _json(_ref("BeforeAfterReport"), "The comparison."),
                **_errors(400, 401, 405),
            },
        }
    },
    "/hl7-feeds": {
        "get": {
            "operationId": "listHl7Feeds",
            "summary": "The organization's HL7 feeds (MLLP listeners and file imports).",
            "responses": {
                "200": _json(_ref("Hl7FeedList"), "The feeds, by name."),
                **_errors(400, 401, 405),
            },
        },
        "post": {
            "operationId": "createHl7Feed",
            "summary": "Add an HL7 feed, as `careline hl7-feed add` does.",
            "description": (
                "The feed is active at once: `careline mllp --organization <slug>` takes its "
                "messages. Refused (422, by field) for a name the organization already uses, "
                "an unknown time zone, a namespace that is not a URI, or a location mapped "
                "to a practice code the organization does not have."
            ),
            "requestBody": _body("Hl7FeedRequest"),
            "responses": {
                "201": _json(_ref("Hl7Feed"), "The feed, added.")
                | {"headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}},
                **_errors(400, 401, 405, 413, 415, 422),
            },
        },
    },
    "/extra-touch": {
        "get": {
            "operationId": "listExtraTouches",
            "summary": "The extra touch for high-risk visits, per practice, with its result.",
            "description": "When the no-show model rates a visit at or above the threshold "
            "two days before it (or at booking, if later), a random `touch_share` of those "
            "visits gets one more reminder; comparing the arms measures the touch.",
            "responses": {
                "200": _json(_ref("ExtraTouchList"), "Newest first."),
                **_errors(400, 401, 405),
            },
        },
        "post": {
            "operationId": "startExtraTouch",
            "summary": "Start a practice's (or the organization's) extra touch.",
            "description": "Replaces the practice's running one; its arms stay, for results.",
            "requestBody": _body("ExtraTouchRequest"),
            "responses": {
                "201": _json(_ref("ExtraTouch"), "Started.")
                | {"headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}},
                **_errors(400, 401, 405, 415, 422),
            },
        },
    },
    "/extra-touch/{policy_id}": {
        "get": {
            "operationId": "getExtraTouch",
            "summary": "An extra touch and its randomized result.",
            "parameters": [_path_id("policy_id", "extra touch")],
            "responses": {
                "200": _json(_ref("ExtraTouch"), "The touch."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/extra-touch/{policy_id}/stop": {
        "post": {
            "operationId": "stopExtraTouch",
            "summary": "Stop deciding new visits; the decided arms stay.",
            "parameters": [_path_id("policy_id", "extra touch")],
            "responses": {
                "200": _json(_ref("ExtraTouch"), "Stopped."),
                **_errors(400, 401, 404, 405),
            },
        }
    },
    "/hl7-feeds/{feed_id}": {
        "get": {
            "operationId": "getHl7Feed",
            "summary": "An HL7 feed.",
            "parameters": [_path_id("feed_id", "feed")],
            "responses": {
                "200": _json(_ref("Hl7Feed"), "The feed."),
                **_errors(400, 401, 404, 405),
            },
        },
        "delete": {
            "operationId": "deleteHl7Feed",
            "summary": "Remove an HL7 feed.",
            "description": "A feed that never exchanged a message is deleted; one with "
            "stored messages is deactivated, keeping them as the record.",
            "parameters": [_path_id("feed_id", "feed")],
            "responses": {
                "200": _json(_ref("Hl7FeedRemoval"), "What was done."),
                **_errors(400, 401, 404, 405),
            },
        },
    },
}


def openapi_document(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Careline API",
            "version": "1.0.0",
            "description": (
                "Conversations, broadcasts, reminder rules, reminder experiments, reports, "
                "HL7 feeds and the front desk's acts on visits (confirm, cancel, reschedule, "
                "check in, no-show, undo) of one organization "
                "(appointments, patients and schedules are in the FHIR R4 API at /fhir/R4/). "
                "Authenticate with `Authorization: Bearer <API key>` (`careline apikey create`); "
                "everything is scoped to the key's organization. Errors are "
                '`{"error": {"code", "message"}}`. Lists are paged with `limit` and `cursor`; '
                "follow `next` until it is null."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Careline API key, cl_<prefix>_<secret>.",
                }
            },
            "schemas": SCHEMAS,
            "responses": {
                f"E{status}": _json(_ref("Error"), description)
                for status, description in ERROR_DESCRIPTIONS.items()
            },
        },
    }
