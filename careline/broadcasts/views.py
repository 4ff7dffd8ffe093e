from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from careline.broadcasts import previews, sending
from careline.broadcasts.forms import BroadcastForm
from careline.broadcasts.models import Broadcast, BroadcastPreview
from careline.clinics.models import Practice, StaffMembership, StaffRole

SENDER_ROLES = {StaffRole.ORGANIZATION_ADMIN, StaffRole.PRACTICE_MANAGER}


def _may_send(user) -> bool:
    return (
        user.is_superuser
        or StaffMembership.objects.filter(user=user, role__in=SENDER_ROLES).exists()
    )


@login_required
def broadcast_list(request: HttpRequest) -> HttpResponse:
    broadcasts = Broadcast.objects.visible_to(request.user)[:100]
    return render(
        request,
        "broadcasts/list.html",
        {"broadcasts": broadcasts, "may_send": _may_send(request.user)},
    )


def _preview_context(form: BroadcastForm, user) -> dict:
    # A large audience is counted by the worker; the page polls for it (preview_count).
    counted = previews.ask(
        form.organization_id(), form.audience(), send_at=form.cleaned_data.get("send_at"), user=user
    )
    body_en, body_es = form.cleaned_data["body_en"], form.cleaned_data.get("body_es") or ""
    practice = form.cleaned_data["practices"][0].name
    waiting = isinstance(counted, BroadcastPreview)
    return {
        "preview": None if waiting else counted,
        "counting": counted if waiting else None,
        "samples": [
            (
                "English",
                sending.render_sample(body_en, first_name="Maria", practice=practice),
                sending.segment_count(body_en),
            ),
            (
                "Spanish",
                sending.render_sample(body_es or body_en, first_name="María", practice=practice),
                sending.segment_count(body_es or body_en),
            ),
        ],
    }


@login_required
def compose(request: HttpRequest) -> HttpResponse:
    if not _may_send(request.user):
        raise PermissionDenied("Only practice managers and organization admins send broadcasts.")
    form = BroadcastForm(request.POST or None, user=request.user)
    context: dict = {"form": form}
    if request.method == "POST" and form.is_valid():
        try:
            sending.validate_bodies(
                form.cleaned_data["body_en"], form.cleaned_data.get("body_es") or ""
            )
            if request.POST.get("action") != "send":
                context.update(_preview_context(form, request.user))
        except sending.BroadcastError as exc:
            form.add_error(None, str(exc))
        else:
            if request.POST.get("action") == "send":
                try:
                    broadcast = sending.send_broadcast(
                        organization_id=form.organization_id(),
                        audience=form.audience(),
                        name=form.cleaned_data["name"],
                        body_en=form.cleaned_data["body_en"],
                        body_es=form.cleaned_data.get("body_es") or "",
                        send_at=form.cleaned_data.get("send_at"),
                        user=request.user,
                    )
                except sending.BroadcastError as exc:
                    form.add_error(None, str(exc))
                else:
                    if broadcast.recipients is None:
                        messages.success(request, "Queued; its audience is being counted.")
                    else:
                        messages.success(request, f"Queued for {broadcast.recipients} patients.")
                    return redirect("broadcasts:detail", broadcast_id=broadcast.id)
    template = "broadcasts/_preview.html" if request.htmx else "broadcasts/compose.html"
    return render(request, template, context)


@login_required
@require_GET
def preview_count(request: HttpRequest, preview_id: int) -> HttpResponse:
    """The worker's count of a previewed audience, polled by the compose page; seen by
    those who may send to every practice of its audience."""
    if not _may_send(request.user):
        raise PermissionDenied("Only practice managers and organization admins send broadcasts.")
    record = get_object_or_404(BroadcastPreview, pk=preview_id)
    visible = set(Practice.objects.visible_to(request.user).values_list("id", flat=True))
    if not set(record.audience.get("practice_ids") or ()) <= visible:
        raise Http404
    context = {"preview": previews.counted(record), "counting": record}
    return render(request, "broadcasts/_count.html", context)


@login_required
def detail(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    broadcast = get_object_or_404(Broadcast.objects.visible_to(request.user), pk=broadcast_id)
    report = sending.delivery_report(broadcast)
    context = {
        "broadcast": broadcast,
        "report": report,
        "progress": sending.progress(broadcast, report),
        "done": broadcast.state in (Broadcast.State.DONE, Broadcast.State.CANCELLED),
    }
    template = "broadcasts/_progress.html" if request.htmx else "broadcasts/detail.html"
    return render(request, template, context)


@login_required
@require_POST
def cancel(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    if not _may_send(request.user):
        raise PermissionDenied
    broadcast = get_object_or_404(Broadcast.objects.visible_to(request.user), pk=broadcast_id)
    stopped = sending.cancel_broadcast(broadcast)
    messages.info(request, f"Stopped: {stopped} messages not yet sent were cancelled.")
    return redirect("broadcasts:detail", broadcast_id=broadcast.id)
