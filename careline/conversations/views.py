"""The staff inbox: thin views over careline.conversations.inbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from careline.audit.access import record_patient_access
from careline.clinics.models import Practice, StaffMembership, StaffRole
from careline.clinics.validators import parse_id, query_id
from careline.conversations import inbox, response_limits, workspace
from careline.conversations.models import Conversation, ConversationState, Queue

STATE_FILTERS = {
    "active": ~Q(state=ConversationState.CLOSED),
    "open": Q(state=ConversationState.OPEN),
    "waiting": Q(state=ConversationState.WAITING),
    "closed": Q(state=ConversationState.CLOSED),
}


@dataclass(frozen=True)
class ThreadItem:
    at: datetime
    kind: str  # "patient" | "careline" | "staff" | "note"
    body: str
    who: str = ""
    status: str = ""


def _conversations(request: HttpRequest):
    return Conversation.objects.visible_to(request.user)


def _inbox_rows(request: HttpRequest, limits: response_limits.Limits):
    qs = _conversations(request).select_related("practice", "patient", "assigned_to")
    queue = request.GET.get("queue", "")
    if queue in Queue.values:
        qs = qs.filter(queue=queue)
    practice_id = query_id(request.GET, "practice")
    if practice_id is not None:
        qs = qs.filter(practice_id=practice_id)
    state = request.GET.get("state", "active")
    if state == "mine":
        qs = qs.filter(assigned_to=request.user).exclude(state=ConversationState.CLOSED)
    else:
        qs = qs.filter(STATE_FILTERS.get(state, STATE_FILTERS["active"]))
    qs = workspace.search(qs, _search_text(request))
    rows = list(
        workspace.with_preview(qs).order_by("-urgent", "-unread_count", "last_patient_message_at")[
            :200
        ]
    )
    now = timezone.now()
    for row in rows:
        row.sla = limits.limit(row.organization_id, row.practice_id, row.queue)
        row.late = row.waiting_since is not None and now - row.waiting_since > row.sla
    return rows


def _search_text(request: HttpRequest) -> str:
    text = request.GET.get("q", "").strip()
    if len(text) > 100 or "\x00" in text:
        raise ValidationError("q: search for at most 100 characters.")
    return text


@login_required
def inbox_list(request: HttpRequest) -> HttpResponse:
    limits = response_limits.load(
        Practice.objects.visible_to(request.user).values_list("organization_id", flat=True)
    )
    try:
        rows = _inbox_rows(request, limits)
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain")
    text = _search_text(request)
    if text and workspace.looks_like_a_name(text) and not request.htmx:
        # A search by name is a look-up of patients, recorded like the other patient lists
        # (the 5-second refresh of the same search is not another look-up).
        record_patient_access(request, None, "inbox search")
    now = timezone.now()
    context = {
        "conversations": rows,
        "queues": Queue.choices,
        "queue_counts": workspace.queue_counts(_conversations(request), limits),
        "practices": Practice.objects.visible_to(request.user),
        "manages_canned_replies": not request.htmx and _manages_settings(request),
        "now": now,
        "filters": request.GET,
    }
    template = "conversations/_rows.html" if request.htmx else "conversations/inbox.html"
    return render(request, template, context)


def _thread(conversation: Conversation) -> list[ThreadItem]:
    items = [
        ThreadItem(
            m.received_at, "patient", m.body, status=m.get_intent_display() if m.intent else ""
        )
        for m in conversation.messages.all()
    ]
    for reply in conversation.replies.select_related("message", "author"):
        kind = "staff" if reply.author_id else "careline"
        who = reply.author.get_username() if reply.author_id else "Careline"
        items.append(
            ThreadItem(
                reply.created_at, kind, reply.message.body, who, reply.message.get_state_display()
            )
        )
    for note in conversation.notes.select_related("author"):
        items.append(
            ThreadItem(
                note.created_at,
                "note",
                note.body,
                note.author.get_username() if note.author_id else "Careline",
            )
        )
    return sorted(items, key=lambda item: item.at)


def _colleagues(conversation: Conversation):
    users = (
        get_user_model()
        .objects.filter(memberships__organization_id=conversation.organization_id, is_active=True)
        .distinct()
        .order_by("username")
    )
    return [
        u for u in users if Conversation.objects.visible_to(u).filter(pk=conversation.pk).exists()
    ]


@login_required
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(
        _conversations(request).select_related("practice", "patient", "assigned_to"),
        pk=conversation_id,
    )
    if conversation.patient_id:
        record_patient_access(
            request,
            conversation.patient_id,
            "inbox conversation",
            practice_id=conversation.practice_id,
        )
    inbox.mark_read(conversation, request.user)
    context = {
        "conversation": conversation,
        "thread": _thread(conversation),
        "queues": Queue.choices,
        "colleagues": _colleagues(conversation),
        "others_here": workspace.others_answering(conversation, request.user),
        "canned_replies": workspace.canned_replies_for(conversation),
        "context": workspace.patient_context(conversation, request.user),
    }
    if request.htmx and request.GET.get("part") == "thread":
        return render(request, "conversations/_thread.html", context)
    return render(request, "conversations/detail.html", context)


def _act(request: HttpRequest, conversation_id: int, action) -> HttpResponse:
    conversation = get_object_or_404(_conversations(request), pk=conversation_id)
    try:
        notice = action(conversation)
    except inbox.InboxError as exc:
        messages.error(request, str(exc))
    else:
        if notice:
            messages.success(request, notice)
    return redirect("conversations:detail", conversation_id=conversation.pk)


def _body(request: HttpRequest) -> str:
    body = request.POST.get("body", "")
    if "\x00" in body:
        # PostgreSQL cannot store a NUL character; no keyboard types one.
        raise inbox.InboxError("body: the text contains a NUL character.")
    return body


@login_required
@require_POST
def reply(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def send(conversation):
        inbox.staff_reply(conversation, request.user, _body(request))
        return "Reply queued; it goes out ahead of reminders."

    return _act(request, conversation_id, send)


@login_required
@require_POST
def note(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def add(conversation):
        inbox.add_note(conversation, request.user, _body(request))
        return "Note saved (not texted)."

    return _act(request, conversation_id, add)


@login_required
@require_POST
def assign(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def give(conversation):
        target = request.POST.get("to", "")
        if target == "me":
            inbox.assign(conversation, request.user, by=request.user)
            return "Assigned to you."
        if target.startswith("queue:"):
            inbox.assign(conversation, target.removeprefix("queue:"), by=request.user)
            return "Moved to the queue."
        if parse_id(target) is not None:
            user = (
                get_user_model()
                .objects.filter(
                    pk=parse_id(target),
                    memberships__in=StaffMembership.objects.filter(
                        organization_id=conversation.organization_id
                    ),
                )
                .first()
            )
            if user is None:
                raise inbox.InboxError("Choose a colleague from the list.")
            inbox.assign(conversation, user, by=request.user)
            return f"Assigned to {user.get_username()}."
        raise inbox.InboxError("Choose who should answer.")

    return _act(request, conversation_id, give)


@login_required
@require_POST
def close(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _act(
        request, conversation_id, lambda c: inbox.close(c, request.user) and "Conversation closed."
    )


@login_required
@require_POST
def reopen(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _act(
        request,
        conversation_id,
        lambda c: inbox.reopen(c, request.user) and "Conversation reopened.",
    )


@login_required
def presence(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Polled by the open conversation: who else has it open, who is typing a reply."""
    conversation = get_object_or_404(_conversations(request), pk=conversation_id)
    context = {
        "conversation": conversation,
        "others_here": workspace.others_answering(conversation, request.user),
        "others_typing": workspace.others_typing(conversation, request.user),
    }
    return render(request, "conversations/_presence.html", context)


@login_required
@require_POST
def typing(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(_conversations(request), pk=conversation_id)
    workspace.typing(conversation, request.user)
    return HttpResponse(status=204)


def _manages_settings(request: HttpRequest) -> bool:
    """Practice managers and organization admins keep the canned replies (settings pages)."""
    return (
        request.user.is_superuser
        or StaffMembership.objects.filter(
            user=request.user,
            role__in=(StaffRole.ORGANIZATION_ADMIN, StaffRole.PRACTICE_MANAGER),
        ).exists()
    )
