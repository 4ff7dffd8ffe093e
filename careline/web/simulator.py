"""The simulator's "patient phones" page: what each phone received, for demos and tests."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from careline.clinics.models import Organization
from careline.clinics.validators import normalize_phone
from careline.conversations.calls import VOICEMAIL, answer_call, answer_key
from careline.conversations.inbound import receive_sms
from careline.messaging.calls import find_call, record_status
from careline.messaging.models import SimulatedPhoneMessage, VoiceCall

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
        texts = list(
            texts_seen.filter(to=number)
            .select_related("outbound_message__call")
            .order_by("-received_at", "-id")[:TEXTS_PER_PHONE]
        )
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


# -- calls ---------------------------------------------------------------------------
# A simulated call is answered through the dialog Twilio's webhooks drive
# (careline.conversations.calls): the same TwiML, shown as words and a keypad.


def _call(request: HttpRequest, token: str) -> VoiceCall:
    organization_ids = _organization_ids(request)
    call = find_call(token)
    if call is None:
        raise Http404("No such call.")
    if call.outbound_message.organization_id not in organization_ids:
        raise PermissionDenied("That call is not from your organization.")
    return call


def _call_screen(request: HttpRequest, call: VoiceCall, twiml: str) -> HttpResponse:
    """What the phone shows while the call goes on: the words spoken, a keypad while
    Careline listens for a key, and the end of the call (Twilio's report, simulated)."""
    root = ET.fromstring(twiml)
    words = [say.text or "" for say in root.iter("Say")]
    listening = root.find("Gather") is not None
    dialed = root.find("Dial")
    ended = not listening
    if ended:
        elapsed = (timezone.now() - call.created_at).total_seconds()
        record_status(call, call_sid=call.call_sid, status="completed", duration=int(elapsed))
    return render(
        request,
        "web/simulator_call.html",
        {
            "call": call,
            "number": call.outbound_message.to_address,
            "words": words,
            "listening": listening,
            "dialed": dialed.text if dialed is not None else "",
            "ended": ended,
            "keys": "123456789*0#",
        },
    )


@require_POST
def answer(request: HttpRequest, token: str) -> HttpResponse:
    """Pick up the ringing phone, as a person or as its voicemail."""
    _simulator_only()
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("simulator"))
    call = _call(request, token)
    if call.status:
        messages.error(request, "That call has already been answered.")
        return redirect("simulator")
    answered_by = VOICEMAIL[0] if request.POST.get("as") == "voicemail" else "human"
    sid = call.outbound_message.provider_message_id
    record_status(call, call_sid=sid, status="in-progress", duration=None)
    return _call_screen(
        request, call, answer_call(call, {"CallSid": sid, "AnsweredBy": answered_by})
    )


@require_POST
def press(request: HttpRequest, token: str) -> HttpResponse:
    """A key pressed on the simulated phone's keypad ("" stays silent)."""
    _simulator_only()
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("simulator"))
    call = _call(request, token)
    if call.status != "in-progress":
        messages.error(request, "That call is not going on.")
        return redirect("simulator")
    digits = request.POST.get("digits", "")
    if digits and digits not in "0123456789*#":
        messages.error(request, "Press one key of the keypad.")
        return redirect("simulator")
    return _call_screen(request, call, answer_key(call, digits[:1]))
