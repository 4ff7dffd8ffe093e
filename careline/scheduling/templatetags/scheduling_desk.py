"""`{% desk_actions appointment %}`: the front desk's buttons for one visit (day view rows,
the patient page), with its undo while the last front-desk change may still be taken back."""

from __future__ import annotations

from django import template
from django.utils import timezone

from careline.scheduling import desk
from careline.scheduling.models import Appointment, ChangeSource

register = template.Library()


@register.inclusion_tag("scheduling/_actions.html", takes_context=True)
def desk_actions(
    context: template.Context,
    appointment: Appointment,
    target: str = "",
    undo: desk.Undoable | None = None,
    error: str = "",
    done: str = "",
) -> dict:
    if undo is None and (
        appointment.status_source == ChangeSource.FRONT_DESK
        and appointment.status_changed_at >= timezone.now() - desk.UNDO_WINDOW
    ):
        # Only a visit the front desk changed minutes ago is looked up (the patient page).
        undo = desk.undoable([appointment.pk]).get(appointment.pk)
    request = context.get("request")
    next_url = ""
    if request is not None:
        htmx = getattr(request, "htmx", None)
        # A partial answers a POST; its forms should still lead back to the page.
        next_url = (htmx.current_url_abs_path if htmx else None) or request.get_full_path()
    return {
        "appointment": appointment,
        "actions": desk.available_actions(appointment),
        "undo": undo,
        "error": error,
        "done": done,
        "target": target or f"#actions-{appointment.pk}",
        "csrf_token": context.get("csrf_token"),
        "next": next_url,
        "zone": appointment.practice.time_zone,
    }
