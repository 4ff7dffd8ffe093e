"""The simulator's "patient phones" page: what each phone received, for demos and tests."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from careline.clinics.models import Organization
from careline.clinics.validators import normalize_phone
from careline.conversations.inbound import receive_sms
from careline.messaging.models import SimulatedPhoneMessage

PHONES_SHOWN = 30
TEXTS_PER_PHONE = 20


def _simulator_only() -> None:
    if settings.CARELINE_SMS_GATEWAY != "simulator":
        raise Http404("The patient-phone simulator is only on with the simulator gateway.")


def _organization_ids(request: HttpRequest) -> list[int]:
    """The organizations whose simulated phones this staff member may see and answer as."""
    user = request.user
    if user.is_superuser:
        return list(Organization.objects.values_list("id", flat=True))
    ids = list(user.memberships.values_list("organization_id", flat=True))
    if not ids:
        raise PermissionDenied("The simulator is for the organization's staff.")
    return ids


def _texts(organization_ids: list[int]):
    return SimulatedPhoneMessage.objects.filter(
        outbound_message__organization_id__in=organization_ids
    )


def phones(request: HttpRequest) -> HttpResponse:
    _simulator_only()
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    texts_seen = _texts(_organization_ids(request))
    recent = list(
        texts_seen.values("to")
        .annotate(last=Max("received_at"))
        .order_by("-last")
        .values_list("to", flat=True)[:PHONES_SHOWN]
    )
    phone_list = []
    for number in recent:
        texts = list(texts_seen.filter(to=number).order_by("-received_at", "-id")[:TEXTS_PER_PHONE])
        texts.reverse()  # newest last, as a phone shows them
        phone_list.append({"number": number, "texts": texts, "reply_to": texts[-1].sender})
    return render(request, "web/simulator.html", {"phones": phone_list})


@require_POST
def reply(request: HttpRequest) -> HttpResponse:
    """The simulated patient answers: the text enters through the same inbound path a
    real provider's webhook uses (careline.conversations.inbound.receive_sms).

    Only as a phone that received a text from the staff member's organization, and only
    to the number that text came from.
    """
    _simulator_only()
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("simulator"))
    organization_ids = _organization_ids(request)
    body = request.POST.get("body", "").strip()
    try:
        from_phone = normalize_phone(request.POST.get("from_phone", ""))
        to_phone = normalize_phone(request.POST.get("to_phone", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("simulator")
    if not body:
        messages.error(request, "Type a reply first.")
        return redirect("simulator")
    if not _texts(organization_ids).filter(to=from_phone, sender=to_phone).exists():
        raise PermissionDenied("That phone has no text from your organization's number.")
    receive_sms(
        from_phone=from_phone,
        to_phone=to_phone,
        body=body,
        provider_message_id=f"SIMIN{uuid.uuid4().hex}",
    )
    messages.success(request, "Reply sent.")
    return redirect("simulator")
