"""The front desk's buttons on a visit (day view rows, the patient page): thin views over
careline.scheduling.desk. An htmx request gets the changed row (or the patient page's
action block) back; a plain form post is redirected to the page it came from."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from careline.audit.access import record_patient_access
from careline.audit.models import AuditEvent
from careline.clinics.models import Practice, Provider
from careline.clinics.validators import calendar_date, query_id
from careline.scheduling import dayview, desk
from careline.scheduling.models import Appointment

_DONE = {
    desk.CONFIRM: "Confirmed.",
    desk.CANCEL: "Cancelled.",
    desk.RESCHEDULE: "Moved.",
    desk.ARRIVED: "Checked in.",
    desk.NO_SHOW: "Marked no-show.",
}


def _visit(request: HttpRequest, appointment_id: int) -> Appointment:
    # Another practice's visit is not found, whatever the role.
    return get_object_or_404(
        Appointment.objects.visible_to(request.user).select_related(
            "patient", "provider", "appointment_type", "practice"
        ),
        pk=appointment_id,
    )


def _slot(text: str) -> tuple[datetime, int]:
    """A picked slot, "<ISO start>|<provider id>"."""
    start_text, _, provider_text = text.partition("|")
    try:
        start = datetime.fromisoformat(start_text)
        provider_id = int(provider_text)
    except ValueError as exc:
        raise desk.DeskError("Pick one of the open times.", "slot") from exc
    return start, provider_id


def _target(text: str, appointment: Appointment) -> str:
    """What the picker's answer replaces: the visit's day-view row or its action block."""
    if text == f"#appt-{appointment.pk}":
        return text
    return f"#actions-{appointment.pk}"


def _back(request: HttpRequest, appointment: Appointment) -> HttpResponse:
    target = request.POST.get("next", "")
    # Only a path on this site (a bare word would be taken for a view's name).
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return HttpResponseRedirect(target)
    local_day = appointment.start.astimezone(appointment.practice.zone).date()
    return redirect("scheduling:day", practice_id=appointment.practice_id, day=local_day)


def _answer(
    request: HttpRequest, appointment_id: int, *, error: str = "", done: str = ""
) -> HttpResponse:
    appointment = _visit(request, appointment_id)
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif done:
            messages.success(request, done)
        return _back(request, appointment)
    undo = desk.undoable([appointment.pk]).get(appointment.pk)
    context = {"error": error, "done": done}
    if (request.htmx.target or "").startswith("appt-"):
        row = dayview.DayRow(
            appointment,
            appointment.start.astimezone(appointment.practice.zone),
            dayview.reply_states([appointment])[appointment.pk],
            undo,
        )
        response = render(request, "scheduling/_row.html", context | {"row": row})
        if done:
            # The day's call list (scheduling/_calls.html) reloads itself on this event.
            response["HX-Trigger"] = "deskChanged"
        return response
    return render(
        request,
        "scheduling/_actions_block.html",
        context | {"appointment": appointment, "undo": undo},
    )


@login_required
@require_POST
def desk_action(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = _visit(request, appointment_id)
    action = request.POST.get("action", "")
    try:
        start, provider_id = (None, None)
        if action == desk.RESCHEDULE:
            start, provider_id = _slot(request.POST.get("slot", ""))
        done = desk.act(
            appointment,
            action,
            user=request.user,
            reason=request.POST.get("reason", ""),
            start=start,
            provider_id=provider_id,
        )
    except desk.DeskError as exc:
        return _answer(request, appointment.pk, error=str(exc))
    record_patient_access(
        request,
        appointment.patient_id,
        f"visit {appointment.pk}: {action}",
        action=AuditEvent.Action.CHANGE,
        practice_id=appointment.practice_id,
    )
    return _answer(request, done.appointment.pk, done=_DONE[action])


@login_required
@require_POST
def desk_undo(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = _visit(request, appointment_id)
    event_text = request.POST.get("event", "")
    try:
        desk.undo(
            appointment,
            user=request.user,
            event_id=int(event_text) if event_text.isdigit() else None,
        )
    except desk.DeskError as exc:
        return _answer(request, appointment.pk, error=str(exc))
    record_patient_access(
        request,
        appointment.patient_id,
        f"visit {appointment.pk}: undo",
        action=AuditEvent.Action.CHANGE,
        practice_id=appointment.practice_id,
    )
    return _answer(request, appointment.pk, done="Undone.")


@login_required
@require_GET
def slot_picker(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = _visit(request, appointment_id)
    from_day = calendar_date(request.GET.get("from"))
    slots = desk.open_times(appointment, from_day)
    names = dict(
        Provider.objects.filter(id__in={s.provider_id for s in slots}).values_list(
            "id", "display_name"
        )
    )
    zone = appointment.practice.zone
    context = {
        "appointment": appointment,
        "slots": [
            {
                "value": f"{s.start.isoformat()}|{s.provider_id}",
                "start": s.start,
                "provider": names.get(s.provider_id, ""),
            }
            for s in slots
        ],
        "from_day": from_day or timezone.now().astimezone(zone).date(),
        "zone": appointment.practice.time_zone,
        "target": _target(request.GET.get("target", ""), appointment),
        "next": request.GET.get("next", ""),
    }
    template = "scheduling/_slot_picker.html" if request.htmx else "scheduling/move.html"
    return render(request, template, context)


def with_undo(rows: list[dayview.DayRow]) -> list[dayview.DayRow]:
    """The day's rows, each with the change the front desk may still undo (one query)."""
    undos = desk.undoable([row.appointment.id for row in rows])
    return [replace(row, undo=undos.get(row.appointment.id)) for row in rows]


@login_required
@require_GET
def day_calls(request: HttpRequest, practice_id: int, day: str) -> HttpResponse:
    """The day view's call list alone, reloaded after each act on a row."""
    practice = get_object_or_404(Practice.objects.visible_to(request.user), pk=practice_id)
    the_day = calendar_date(day)
    if the_day is None:
        raise Http404("Not a date Careline has a schedule for")
    try:
        provider_id = query_id(request.GET, "provider")
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain")
    rows = dayview.day_rows(practice, the_day, provider_id)
    record_patient_access(
        request, None, f"call list {the_day.isoformat()}", practice_id=practice.id
    )
    context = {
        "practice": practice,
        "day": the_day,
        "provider_id": provider_id,
        "calls": dayview.calls_to_make(rows, timezone.now()),
    }
    return render(request, "scheduling/_calls.html", context)
