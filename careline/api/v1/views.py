"""Endpoints of /api/v1/: each parses its input strictly, calls the domain service, and
renders the result. Every query is filtered to the API key's organization."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from careline.analytics.experiments import results as experiment_results
from careline.analytics.experiments import touch_results
from careline.analytics.metrics import (
    DIMENSIONS,
    appointment_metrics,
    before_and_after,
    engagement_metrics,
)
from careline.api.v1 import representations as render
from careline.api.v1.http import (
    ApiError,
    Body,
    Page,
    get_or_404,
    json_body,
    json_response,
    page_response,
    parse_bool,
    parse_choice,
    parse_date,
    parse_id,
    parse_int,
    query_params,
)
from careline.api.v1.openapi import openapi_document
from careline.api.v1.representations import THREAD_LENGTH
from careline.api.v1.service_users import acting_user
from careline.broadcasts import sending as broadcasts
from careline.broadcasts.models import Broadcast
from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.conversations import inbox, response_limits
from careline.conversations.models import (
    Conversation,
    ConversationReply,
    ConversationState,
    InboundMessage,
    Queue,
)
from careline.integrations.feeds import FeedError, add_feed, remove_feed
from careline.integrations.models import ApiKey, Hl7Feed, ProcessingId
from careline.messaging.experiments import SHARE_PERCENT_RANGE, end_experiment, start_experiment
from careline.messaging.models import (
    Channel,
    Experiment,
    MessageState,
    OutboundMessage,
    RiskTouchPolicy,
)
from careline.messaging.rules import default_rule, override_rules, save_default_rule
from careline.messaging.touches import start_policy, stop_policy
from careline.patients.models import Language
from careline.scheduling import desk
from careline.scheduling.models import Appointment, AppointmentEvent


def openapi(request: HttpRequest, api_key: None) -> HttpResponse:
    return json_response(openapi_document(request.build_absolute_uri("/api/v1")))


# --- conversations --------------------------------------------------------------------------


def _conversations(api_key: ApiKey):
    return Conversation.objects.filter(organization_id=api_key.organization_id).select_related(
        "practice", "assigned_to"
    )


def _practice_filter(api_key: ApiKey, value: str) -> int:
    practice_id = parse_id(value, "practice")
    if not Practice.objects.filter(
        organization_id=api_key.organization_id, pk=practice_id
    ).exists():
        raise ApiError(400, f"No practice {practice_id} in this organization.")
    return practice_id


def list_conversations(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    params = query_params(request, {"state", "queue", "practice", "limit", "cursor"})
    page = Page.from_params(params, "last_patient_message_at")
    rows = _conversations(api_key)
    if "state" in params:
        rows = rows.filter(state=parse_choice(params["state"], "state", ConversationState.values))
    if "queue" in params:
        rows = rows.filter(queue=parse_choice(params["queue"], "queue", Queue.values))
    if "practice" in params:
        rows = rows.filter(practice_id=_practice_filter(api_key, params["practice"]))
    found, cursor = page.rows(rows)
    return page_response(request, params, [render.conversation(c) for c in found], cursor)


def _thread(conversation: Conversation) -> tuple[list[dict], bool]:
    """The latest THREAD_LENGTH texts both ways, oldest first, and whether older ones exist."""
    received = InboundMessage.objects.filter(conversation=conversation).order_by(
        "-received_at", "-id"
    )[: THREAD_LENGTH + 1]
    sent = (
        ConversationReply.objects.filter(conversation=conversation)
        .select_related("message", "author")
        .order_by("-created_at", "-id")[: THREAD_LENGTH + 1]
    )
    texts = [render.inbound(m) for m in received] + [render.reply(r) for r in sent]
    texts.sort(key=lambda t: (t["at"], t["direction"], t["id"]))
    return texts[-THREAD_LENGTH:], len(texts) > THREAD_LENGTH


def get_conversation(request: HttpRequest, api_key: ApiKey, conversation_id: int) -> HttpResponse:
    query_params(request, ())
    conversation = get_or_404(_conversations(api_key), conversation_id, "conversation")
    messages, older = _thread(conversation)
    return json_response(
        render.conversation(conversation) | {"messages": messages, "older_messages": older}
    )


def reply_to_conversation(
    request: HttpRequest, api_key: ApiKey, conversation_id: int
) -> HttpResponse:
    query_params(request, ())
    conversation = get_or_404(_conversations(api_key), conversation_id, "conversation")
    body = Body(json_body(request), {"body"})
    text = body.text("body", required=True, max_length=inbox.MAX_REPLY_CHARACTERS)
    body.finish()
    try:
        sent = inbox.staff_reply(conversation, acting_user(api_key), text)
    except inbox.InboxError as exc:
        raise ApiError(422, str(exc)) from exc
    sent = ConversationReply.objects.select_related("message", "author").get(pk=sent.pk)
    updated = _conversations(api_key).get(pk=conversation.pk)
    return json_response(
        {"reply": render.reply(sent), "conversation": render.conversation(updated)}, 201
    )


def close_conversation(request: HttpRequest, api_key: ApiKey, conversation_id: int) -> HttpResponse:
    query_params(request, ())
    conversation = get_or_404(_conversations(api_key), conversation_id, "conversation")
    Body(json_body(request, required=False), ()).finish()
    try:
        inbox.close(conversation, acting_user(api_key))
    except inbox.InboxError as exc:
        raise ApiError(422, str(exc)) from exc
    return json_response(render.conversation(_conversations(api_key).get(pk=conversation.pk)))


# --- broadcasts ----------------------------------------------------------------------------

AUDIENCE_FIELDS = {
    "practice_ids",
    "provider_ids",
    "appointment_type_ids",
    "appointments_from",
    "appointments_to",
    "language",
    "seen_since",
}


def _broadcasts(api_key: ApiKey):
    return (
        Broadcast.objects.filter(organization_id=api_key.organization_id)
        .select_related("created_by")
        .prefetch_related("practices")
    )


def list_broadcasts(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    params = query_params(request, {"limit", "cursor"})
    found, cursor = Page.from_params(params, "created_at").rows(_broadcasts(api_key))
    return page_response(request, params, [render.broadcast(b) for b in found], cursor)


def _audience(body: Body) -> broadcasts.Audience:
    fields = body.nested("audience", AUDIENCE_FIELDS)
    audience = broadcasts.Audience(
        practice_ids=fields.ids("practice_ids", required=True),
        provider_ids=fields.ids("provider_ids"),
        appointment_type_ids=fields.ids("appointment_type_ids"),
        appointments_from=fields.date("appointments_from"),
        appointments_to=fields.date("appointments_to"),
        language=fields.choice("language", ["", *Language.values], ""),
        seen_since=fields.date("seen_since"),
    )
    if (
        audience.appointments_from
        and audience.appointments_to
        and audience.appointments_from > audience.appointments_to
    ):
        fields.fail("appointments_to", "must not be before appointments_from")
    return audience


def _foreign_ids(organization: Organization, audience: broadcasts.Audience) -> dict[str, list[int]]:
    """Audience ids that are not the organization's, by audience field."""
    checks = {
        "practice_ids": (Practice, audience.practice_ids),
        "provider_ids": (Provider, audience.provider_ids),
        "appointment_type_ids": (AppointmentType, audience.appointment_type_ids),
    }
    problems = {}
    for field, (model, ids) in checks.items():
        if not ids:
            continue
        known = set(
            model.objects.filter(organization=organization, id__in=ids).values_list("id", flat=True)
        )
        missing = [i for i in ids if i not in known]
        if missing:
            problems[field] = missing
    return problems


def create_broadcast(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Preview (?dry_run=true) or queue a broadcast."""
    params = query_params(request, {"dry_run"})
    dry_run = parse_bool(params.get("dry_run", "false"), "dry_run")
    body = Body(json_body(request), {"name", "body_en", "body_es", "send_at", "audience"})
    name = body.text("name", required=True, max_length=120)
    body_en = body.text("body_en", required=True)
    body_es = body.text("body_es")
    send_at = body.moment("send_at")
    audience = _audience(body)
    body.finish()
    foreign = _foreign_ids(api_key.organization, audience)
    if foreign:
        raise ApiError(
            422,
            "The audience names ids that are not this organization's.",
            fields={
                f"audience.{field}": [f"unknown id(s): {', '.join(map(str, ids))}"]
                for field, ids in foreign.items()
            },
        )
    try:
        broadcasts.validate_bodies(body_en, body_es)
        if dry_run:
            summary = broadcasts.preview(api_key.organization_id, audience, send_at=send_at)
            return json_response(
                render.preview(summary)
                | {
                    "segments": {
                        "en": render.segments(broadcasts.segment_count(body_en)),
                        "es": render.segments(broadcasts.segment_count(body_es or body_en)),
                    }
                }
            )
        created = broadcasts.send_broadcast(
            organization_id=api_key.organization_id,
            audience=audience,
            name=name,
            body_en=body_en,
            body_es=body_es,
            send_at=send_at,
            user=acting_user(api_key),
        )
    except broadcasts.BroadcastError as exc:
        raise ApiError(422, str(exc)) from exc
    return _broadcast_response(request, api_key, created.pk, 201)


def _broadcast_response(
    request: HttpRequest, api_key: ApiKey, broadcast_id: int, status: int = 200
) -> HttpResponse:
    found = get_or_404(_broadcasts(api_key), broadcast_id, "broadcast")
    data = render.broadcast(found) | {
        "delivery": render.delivery(broadcasts.delivery_report(found))
    }
    location = request.build_absolute_uri(f"/api/v1/broadcasts/{found.pk}")
    return json_response(data, status, **({"Location": location} if status == 201 else {}))


def get_broadcast(request: HttpRequest, api_key: ApiKey, broadcast_id: int) -> HttpResponse:
    query_params(request, ())
    return _broadcast_response(request, api_key, broadcast_id)


# --- reminder rules -------------------------------------------------------------------------


def _cadence(api_key: ApiKey) -> HttpResponse:
    return json_response(
        {
            "default": render.reminder_rule(default_rule(api_key.organization)),
            "overrides": [render.reminder_rule(r) for r in override_rules(api_key.organization)],
        }
    )


def get_reminder_rules(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    query_params(request, ())
    return _cadence(api_key)


def put_reminder_rules(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Replace the organization's default cadence; omitted fields take their defaults."""
    query_params(request, ())
    body = Body(
        json_body(request),
        {"offsets_minutes", "channel", "stop_when_confirmed", "send_event_messages", "active"},
    )
    fields = {
        "offsets_minutes": body.raw("offsets_minutes", required=True),
        "channel": body.choice("channel", Channel.values, Channel.SMS),
        "stop_when_confirmed": body.boolean("stop_when_confirmed", True),
        "send_event_messages": body.boolean("send_event_messages", True),
        "active": body.boolean("active", True),
    }
    body.finish()
    try:
        save_default_rule(api_key.organization, **fields)
    except ValidationError as exc:
        raise ApiError(
            422,
            f"The reminder rule is not valid: {' '.join(exc.messages)}",
            fields=exc.message_dict,
        ) from exc
    return _cadence(api_key)


# --- inbox response-time limits -------------------------------------------------------------


def _response_limits(api_key: ApiKey, practice: Practice | None) -> HttpResponse:
    limits = response_limits.limits_of(api_key.organization, practice)
    return json_response(
        {
            "practice_id": practice.pk if practice else None,
            "limits": [
                {
                    "queue": limit.queue,
                    "minutes": limit.minutes,
                    "own": limit.own,
                    "inherited": limit.inherited,
                }
                for limit in limits
            ],
        }
    )


def get_response_limits(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """The organization's limits per inbox queue, or one practice's (`practice`)."""
    params = query_params(request, {"practice"})
    practice = None
    if "practice" in params:
        practice = Practice.objects.get(pk=_practice_filter(api_key, params["practice"]))
    return _response_limits(api_key, practice)


def put_response_limits(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Set the organization's (practice_id null) or a practice's limits; a queue given null
    inherits again, a queue not named keeps its limit."""
    query_params(request, ())
    body = Body(json_body(request), {"practice_id", "minutes"})
    practice_id = body.raw("practice_id")
    minutes = body.raw("minutes", required=True)
    practice = None
    if practice_id is not None:
        if isinstance(practice_id, bool) or not isinstance(practice_id, int):
            body.fail("practice_id", "must be a practice's id or null")
        else:
            practice = Practice.objects.filter(
                organization_id=api_key.organization_id, pk=practice_id
            ).first()
            if practice is None:
                body.fail("practice_id", f"no practice {practice_id} in this organization")
    if minutes is not None and not isinstance(minutes, dict):
        body.fail("minutes", "must be an object mapping queue names to minutes or null")
    elif isinstance(minutes, dict):
        for queue, value in minutes.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                body.fail(f"minutes.{queue}", "must be whole minutes or null")
    body.finish()
    try:
        response_limits.save_limits(api_key.organization, practice, minutes)
    except ValidationError as exc:
        fields = {f"minutes.{k}": v for k, v in exc.message_dict.items()}
        summary = "; ".join(f"{k} {' and '.join(v)}" for k, v in fields.items())
        raise ApiError(422, f"The request body is not valid: {summary}.", fields=fields) from exc
    return _response_limits(api_key, practice)


# --- planned messages -----------------------------------------------------------------------


def planned_messages(request: HttpRequest, api_key: ApiKey, appointment_id: int) -> HttpResponse:
    """The texts planned for a visit and not sent yet, with when each is due."""
    query_params(request, ())
    appointment = get_or_404(
        Appointment.objects.filter(organization_id=api_key.organization_id),
        appointment_id,
        "appointment",
    )
    rows = OutboundMessage.objects.filter(
        appointment_id=appointment.pk, state=MessageState.SCHEDULED
    ).order_by("due_at", "id")
    return json_response(
        {"appointment_id": appointment.pk, "data": [render.planned_message(m) for m in rows]}
    )


# --- reports --------------------------------------------------------------------------------


def _practices(api_key: ApiKey, params: dict[str, str]):
    practices = Practice.objects.filter(organization_id=api_key.organization_id)
    if "practice" in params:
        practices = practices.filter(pk=_practice_filter(api_key, params["practice"]))
    return practices


def appointment_report(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Grouped appointment metrics; `to` is inclusive."""
    params = query_params(request, {"group_by", "from", "to", "practice"})
    group_by = parse_choice(params.get("group_by", "practice"), "group_by", DIMENSIONS)
    start = parse_date(params["from"], "from") if "from" in params else None
    last = parse_date(params["to"], "to") if "to" in params else None
    if start and last and start > last:
        raise ApiError(400, "'from' must not be after 'to'.")
    appointments = Appointment.objects.filter(organization_id=api_key.organization_id)
    if "practice" in params:
        appointments = appointments.filter(
            practice_id=_practice_filter(api_key, params["practice"])
        )
    rows = appointment_metrics(
        appointments,
        group_by=group_by,
        start=start,
        end=last + timedelta(days=1) if last else None,
    )
    return json_response(
        {
            "group_by": group_by,
            "from": start,
            "to": last,
            "data": [render.metrics_row(row) for row in rows],
        }
    )


def engagement_report(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Per practice; `to` is inclusive, the period defaults to the 30 days up to today."""
    params = query_params(request, {"from", "to", "practice"})
    last = parse_date(params["to"], "to") if "to" in params else timezone.now().date()
    start = parse_date(params["from"], "from") if "from" in params else last - timedelta(days=29)
    if start > last:
        raise ApiError(400, "'from' must not be after 'to'.")
    rows = engagement_metrics(
        _practices(api_key, params).order_by("name", "id"),
        start=datetime.combine(start, time.min, tzinfo=UTC),
        end=datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
    )
    return json_response(
        {"from": start, "to": last, "data": [render.engagement_row(r) for r in rows]}
    )


def before_after_report(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    params = query_params(request, {"window_days", "practice"})
    window = parse_int(params.get("window_days", "180"), "window_days", 1, 3650)
    practices = _practices(api_key, params).order_by("name", "id")
    return json_response(
        {
            "window_days": window,
            "data": [
                render.before_after(r) for r in before_and_after(practices, window_days=window)
            ],
        }
    )


# --- HL7 feeds ------------------------------------------------------------------------------


def _hl7_feeds(api_key: ApiKey):
    return Hl7Feed.objects.filter(organization_id=api_key.organization_id).select_related(
        "organization"
    )


def list_hl7_feeds(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    query_params(request, ())
    feeds = _hl7_feeds(api_key).order_by("name", "id")
    return json_response({"data": [render.hl7_feed(f) for f in feeds]})


def _location_map(body: Body) -> dict[str, str]:
    value = body.raw("location_map")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        body.fail(
            "location_map",
            'must be an object of location code → practice code, e.g. {"TROYMAIN": "TROY"}',
        )
        return {}
    return value


def create_hl7_feed(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    query_params(request, ())
    body = Body(
        json_body(request),
        {
            "name",
            "time_zone",
            "identifier_system",
            "processing_id",
            "location_map",
            "sending_application",
        },
    )
    fields = {
        "name": body.text("name", required=True, max_length=60),
        "time_zone": body.text("time_zone", max_length=64),
        "identifier_system": body.text("identifier_system", max_length=255),
        "processing_id": body.choice("processing_id", ProcessingId.values, ProcessingId.PRODUCTION),
        "location_map": _location_map(body),
        "sending_application": body.text("sending_application", max_length=180),
    }
    body.finish()
    try:
        feed = add_feed(api_key.organization, **fields)
    except FeedError as exc:
        problems = {k: v for k, v in exc.problems.items() if k != "__all__"}
        raise ApiError(422, f"The feed is not valid: {exc}", fields=problems or None) from exc
    found = _hl7_feeds(api_key).get(pk=feed.pk)
    location = request.build_absolute_uri(f"/api/v1/hl7-feeds/{found.pk}")
    return json_response(render.hl7_feed(found), 201, Location=location)


def get_hl7_feed(request: HttpRequest, api_key: ApiKey, feed_id: int) -> HttpResponse:
    query_params(request, ())
    return json_response(render.hl7_feed(get_or_404(_hl7_feeds(api_key), feed_id, "HL7 feed")))


def delete_hl7_feed(request: HttpRequest, api_key: ApiKey, feed_id: int) -> HttpResponse:
    """Delete the feed, or deactivate it when it has stored messages (they are the record)."""
    query_params(request, ())
    feed = get_or_404(_hl7_feeds(api_key), feed_id, "HL7 feed")
    deleted = remove_feed(feed)
    return json_response(
        {"outcome": "deleted" if deleted else "deactivated", "feed": render.hl7_feed(feed)}
    )


# --- appointments: the front desk's acts ---------------------------------------------------

ACTION_FIELDS = {"action", "reason", "start", "provider_id"}
OPEN_TIMES_MAX = 20


def _appointments(api_key: ApiKey):
    return Appointment.objects.filter(organization_id=api_key.organization_id).select_related(
        "practice"
    )


def _change_response(done: desk.Done) -> HttpResponse:
    event = AppointmentEvent.objects.select_related("changed_by").get(pk=done.event.pk)
    return json_response(
        {
            "appointment": render.appointment(done.appointment),
            "change": render.appointment_change(event, done.undo_until),
        }
    )


def _desk_refusal(exc: desk.DeskError) -> ApiError:
    return ApiError(422, str(exc), fields={exc.field: [str(exc)]})


def get_appointment(request: HttpRequest, api_key: ApiKey, appointment_id: int) -> HttpResponse:
    query_params(request, ())
    return json_response(
        render.appointment(get_or_404(_appointments(api_key), appointment_id, "appointment"))
    )


def act_on_appointment(request: HttpRequest, api_key: ApiKey, appointment_id: int) -> HttpResponse:
    query_params(request, ())
    appointment = get_or_404(_appointments(api_key), appointment_id, "appointment")
    body = Body(json_body(request), ACTION_FIELDS)
    action = ""
    if body.data.get("action") is None:
        body.fail("action", "is required")
    else:
        action = body.choice("action", desk.ACTIONS, "")
    reason = body.text("reason", max_length=desk.REASON_MAX_LENGTH)
    start = body.moment("start")
    provider_id = None
    if body.data.get("provider_id") is not None:
        value = body.data["provider_id"]
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            provider_id = value
        else:
            body.fail("provider_id", "must be a provider's id (a positive whole number)")
    body.finish()
    try:
        done = desk.act(
            appointment,
            action,
            user=acting_user(api_key),
            reason=reason,
            start=start,
            provider_id=provider_id,
        )
    except desk.DeskError as exc:
        raise _desk_refusal(exc) from exc
    return _change_response(done)


def undo_appointment_change(
    request: HttpRequest, api_key: ApiKey, appointment_id: int
) -> HttpResponse:
    query_params(request, ())
    appointment = get_or_404(_appointments(api_key), appointment_id, "appointment")
    body = Body(json_body(request, required=False), {"change_id"})
    change_id = body.data.get("change_id")
    if change_id is not None and (
        not isinstance(change_id, int) or isinstance(change_id, bool) or change_id <= 0
    ):
        body.fail("change_id", "must be the id of the change to undo (a positive whole number)")
    body.finish()
    try:
        done = desk.undo(appointment, user=acting_user(api_key), event_id=change_id)
    except desk.DeskError as exc:
        if exc.field == "event":
            raise ApiError(422, str(exc), fields={"change_id": [str(exc)]}) from exc
        raise _desk_refusal(exc) from exc
    return _change_response(done)


def appointment_open_times(
    request: HttpRequest, api_key: ApiKey, appointment_id: int
) -> HttpResponse:
    params = query_params(request, ("from", "limit"))
    appointment = get_or_404(_appointments(api_key), appointment_id, "appointment")
    from_day = parse_date(params["from"], "from") if "from" in params else None
    limit = parse_int(params["limit"], "limit", 1, OPEN_TIMES_MAX) if "limit" in params else 8
    slots = desk.open_times(appointment, from_day, count=limit)
    return json_response({"data": [render.open_time(s) for s in slots]})


# --- reminder experiments -------------------------------------------------------------------


def _experiments(api_key: ApiKey):
    return Experiment.objects.filter(organization_id=api_key.organization_id).select_related(
        "practice", "created_by"
    )


def list_experiments(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    params = query_params(request, {"limit", "cursor"})
    found, cursor = Page.from_params(params, "started_at").rows(_experiments(api_key))
    return page_response(request, params, [render.experiment(e) for e in found], cursor)


def _share_percent(body: Body) -> int:
    low, high = SHARE_PERCENT_RANGE
    value = body.raw("share_percent", required=True)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        body.fail("share_percent", f"must be a whole number from {low} to {high}")
        return 0
    return value


def create_experiment(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Start an experiment now, organization-wide or at one practice."""
    query_params(request, ())
    body = Body(json_body(request), {"name", "practice_id", "withheld_step", "share_percent"})
    name = body.text("name", required=True, max_length=120)
    withheld_step = body.text("withheld_step") or Experiment.ALL_STEPS
    share = _share_percent(body)
    practice_id = body.raw("practice_id")
    if practice_id is not None and (
        not isinstance(practice_id, int)
        or isinstance(practice_id, bool)
        or not Practice.objects.filter(
            organization_id=api_key.organization_id, pk=practice_id
        ).exists()
    ):
        body.fail("practice_id", "must be the id of a practice of this organization, or null")
        practice_id = None
    body.finish()
    try:
        created = start_experiment(
            organization_id=api_key.organization_id,
            practice_id=practice_id,
            name=name,
            withheld_step=withheld_step,
            share_basis_points=share * 100,
            created_by=acting_user(api_key),
        )
    except ValidationError as exc:
        fields = {
            ("share_percent" if k == "share_basis_points" else k): v
            for k, v in exc.message_dict.items()
        }
        raise ApiError(
            422, f"The experiment is not valid: {' '.join(exc.messages)}", fields=fields
        ) from exc
    return _experiment_response(request, api_key, created.pk, 201)


def _experiment_response(
    request: HttpRequest, api_key: ApiKey, experiment_id: int, status: int = 200
) -> HttpResponse:
    found = get_or_404(_experiments(api_key), experiment_id, "experiment")
    data = render.experiment(found) | render.experiment_results(experiment_results(found))
    location = request.build_absolute_uri(f"/api/v1/experiments/{found.pk}")
    return json_response(data, status, **({"Location": location} if status == 201 else {}))


def get_experiment(request: HttpRequest, api_key: ApiKey, experiment_id: int) -> HttpResponse:
    query_params(request, ())
    return _experiment_response(request, api_key, experiment_id)


def stop_experiment(request: HttpRequest, api_key: ApiKey, experiment_id: int) -> HttpResponse:
    """No new visits join; the arms already drawn stay, for the results. Stopping a stopped
    experiment changes nothing."""
    query_params(request, ())
    Body(json_body(request, required=False), ()).finish()
    end_experiment(get_or_404(_experiments(api_key), experiment_id, "experiment"))
    return _experiment_response(request, api_key, experiment_id)


# --- the extra touch for high-risk visits --------------------------------------------------


def _touch_policies(api_key: ApiKey):
    return RiskTouchPolicy.objects.filter(organization_id=api_key.organization_id).select_related(
        "practice"
    )


def list_extra_touches(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    query_params(request, ())
    return json_response(
        {"data": [render.extra_touch(touch_results(p)) for p in _touch_policies(api_key)]}
    )


def _share(body: Body, name: str, default: float | None = None) -> float:
    """A share strictly between 0 and 1 (a JSON number)."""
    value = body.data.get(name, default)
    if value is None:
        body.fail(name, "is required")
    elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        body.fail(name, "must be a number between 0 and 1 (exclusive)")
    else:
        return float(value)
    return 0.5


def start_extra_touch(request: HttpRequest, api_key: ApiKey) -> HttpResponse:
    """Start (or replace) a practice's or the organization's extra touch."""
    query_params(request, ())
    body = Body(json_body(request), {"practice", "threshold", "touch_share"})
    threshold = _share(body, "threshold")
    touch_share = _share(body, "touch_share", 0.5)
    practice_id = body.raw("practice")
    if practice_id is not None and (
        isinstance(practice_id, bool)
        or not isinstance(practice_id, int)
        or not Practice.objects.filter(
            pk=practice_id, organization_id=api_key.organization_id
        ).exists()
    ):
        body.fail("practice", "must be the id of one of the organization's practices, or null")
    body.finish()
    policy = start_policy(
        organization_id=api_key.organization_id,
        practice_id=practice_id,
        threshold=threshold,
        touch_basis_points=max(1, min(9999, round(touch_share * 10_000))),
        now=timezone.now(),
    )
    found = _touch_policies(api_key).get(pk=policy.pk)
    location = request.build_absolute_uri(f"/api/v1/extra-touch/{found.pk}")
    return json_response(render.extra_touch(touch_results(found)), 201, Location=location)


def get_extra_touch(request: HttpRequest, api_key: ApiKey, policy_id: int) -> HttpResponse:
    query_params(request, ())
    policy = get_or_404(_touch_policies(api_key), policy_id, "extra touch")
    return json_response(render.extra_touch(touch_results(policy)))


def stop_extra_touch(request: HttpRequest, api_key: ApiKey, policy_id: int) -> HttpResponse:
    """No new visits are decided; the arms already decided stay, for the results."""
    query_params(request, ())
    policy = get_or_404(_touch_policies(api_key), policy_id, "extra touch")
    stop_policy(policy, now=timezone.now())
    return json_response(render.extra_touch(touch_results(policy)))
