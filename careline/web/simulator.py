"""The simulator's "patient phones" page: what each phone received, for demos and tests."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from careline.clinics.validators import normalize_phone
from careline.conversations.inbound import receive_sms
from careline.messaging.models import SimulatedPhoneMessage

PHONES_SHOWN = 30
TEXTS_PER_PHONE = 20


def _simulator_only() -> None:
    if settings.CARELINE_SMS_GATEWAY != "simulator":
        raise Http404("The patient-phone simulator is only on with the simulator gateway.")


def phones(request: HttpRequest) -> HttpResponse:
    _simulator_only()
    recent = list(
        SimulatedPhoneMessage.objects.values("to")
        .annotate(last=Max("received_at"))
        .order_by("-last")
        .values_list("to", flat=True)[:PHONES_SHOWN]
    )
    phone_list = []
    for number in recent:
        texts = list(
            SimulatedPhoneMessage.objects.filter(to=number).order_by("-received_at", "-id")[
                :TEXTS_PER_PHONE
            ]
        )
        texts.reverse()  # newest last, as a phone shows them
        phone_list.append({"number": number, "texts": texts, "reply_to": texts[-1].sender})
    return render(request, "web/simulator.html", {"phones": phone_list})


@require_POST
def reply(request: HttpRequest) -> HttpResponse:
    """The simulated patient answers: the text enters through the same inbound path a
    real provider's webhook uses (careline.conversations.inbound.receive_sms)."""
    _simulator_only()
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
    receive_sms(
        from_phone=from_phone,
        to_phone=to_phone,
        body=body,
        provider_message_id=f"SIMIN{uuid.uuid4().hex}",
    )
    messages.success(request, "Reply sent.")
    return redirect("simulator")
