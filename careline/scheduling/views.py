from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from careline.audit.access import record_patient_access
from careline.clinics.models import Practice, Provider
from careline.clinics.validators import calendar_date, query_id
from careline.scheduling import dayview
from careline.scheduling.appointments import InvalidTransition, change_status
from careline.scheduling.desk_views import with_undo
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

# What the day view's buttons may do; anything else is refused.
DESK_STATUSES = {
    "arrived": AppointmentStatus.ARRIVED,
    "noshow": AppointmentStatus.NO_SHOW,
    "fulfilled": AppointmentStatus.FULFILLED,
}


def _parse_day(text: str | None, practice: Practice) -> date:
    if not text:
        return timezone.now().astimezone(practice.zone).date()
    day = calendar_date(text)
    if day is None:
        raise Http404("Not a date Careline has a schedule for")
    return day


@login_required
def day_view(request: HttpRequest, practice_id: int | None = None, day: str | None = None):
    practices = Practice.objects.visible_to(request.user)
    if practice_id is None:
        first = practices.first()
        if first is None:
            raise Http404("You are not a member of any practice.")
        return redirect("scheduling:day", practice_id=first.id, day=_parse_day(None, first))
    practice = get_object_or_404(practices, pk=practice_id)
    the_day = _parse_day(day, practice)
    try:
        provider_id = query_id(request.GET, "provider")
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain")
    rows = with_undo(dayview.day_rows(practice, the_day, provider_id))
    record_patient_access(request, None, f"day view {the_day.isoformat()}", practice_id=practice.id)
    context = {
        "practice": practice,
        "practices": practices,
        "day": the_day,
        "previous_day": the_day.fromordinal(the_day.toordinal() - 1),
        "next_day": the_day.fromordinal(the_day.toordinal() + 1),
        "providers": Provider.objects.visible_to(request.user).filter(practices=practice),
        "provider_id": provider_id,
        "rows": rows,
        "calls": dayview.calls_to_make(rows, timezone.now()),
    }
    return render(request, "scheduling/day.html", context)


@login_required
def call_list_view(request: HttpRequest, practice_id: int):
    practice = get_object_or_404(Practice.objects.visible_to(request.user), pk=practice_id)
    today = timezone.now().astimezone(practice.zone).date()
    rows = dayview.call_list(practice, today)
    record_patient_access(request, None, "call list", practice_id=practice.id)
    return render(request, "scheduling/call_list.html", {"practice": practice, "rows": rows})


@login_required
@require_POST
def set_status(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = get_object_or_404(
        Appointment.objects.visible_to(request.user).select_related("practice"), pk=appointment_id
    )
    new_status = DESK_STATUSES.get(request.POST.get("status", ""))
    error = ""
    if new_status is None:
        error = "Unknown action."
    else:
        try:
            appointment = change_status(
                appointment, new_status, source=ChangeSource.STAFF, user=request.user
            )
        except InvalidTransition as exc:
            error = str(exc)
    if request.htmx:
        appointment = Appointment.objects.select_related(
            "patient", "provider", "appointment_type", "practice"
        ).get(pk=appointment.pk)
        row = dayview.DayRow(
            appointment,
            appointment.start.astimezone(appointment.practice.zone),
            dayview.reply_states([appointment])[appointment.id],
        )
        return render(request, "scheduling/_row.html", {"row": row, "error": error})
    if error:
        messages.error(request, error)
    local_day = appointment.start.astimezone(appointment.practice.zone).date()
    return redirect("scheduling:day", practice_id=appointment.practice_id, day=local_day)
