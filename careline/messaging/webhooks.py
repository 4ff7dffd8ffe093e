"""Twilio's webhooks: delivery status of our texts, and texts patients send in.

Both check X-Twilio-Signature against the public URL Twilio called (CARELINE_BASE_URL +
path + query) and answer at once: the work behind them is a few row writes.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from careline.conversations.inbound import receive_sms
from careline.messaging.gateways.twilio import signature_is_valid, status_update_from_callback
from careline.messaging.outbox import apply_status_update

log = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    """The URL as Twilio saw it: behind a proxy, Django's own idea of the host is not it."""
    base = urlsplit(settings.CARELINE_BASE_URL)
    path = request.get_full_path()
    prefix = base.path.rstrip("/")
    if prefix and not path.startswith(prefix + "/"):
        path = prefix + path
    return f"{base.scheme}://{base.netloc}{path}"


def _signed_by_twilio(request: HttpRequest) -> bool:
    valid = signature_is_valid(
        public_url(request),
        request.POST,
        request.headers.get("X-Twilio-Signature", ""),
        request.headers.get("X-Twilio-Webhooks-Signature-Settings", ""),
    )
    if not valid:
        # A steady stream of these usually means CARELINE_BASE_URL is not the public URL.
        log.warning("Rejected unsigned or wrongly signed webhook to %s", request.path)
    return valid


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


# Ids and numbers Twilio sends are short; anything longer is not a Twilio request.
MAX_ID_LENGTH = 64


def _params(request: HttpRequest) -> dict[str, str]:
    """The POST fields without NUL characters, which no text column can store."""
    return {key: value.replace("\x00", "") for key, value in request.POST.items()}


def _too_long(params: dict[str, str], *names: str) -> str:
    return next((n for n in names if len(params.get(n, "")) > MAX_ID_LENGTH), "")


# Twilio signs its requests instead of carrying a CSRF token, hence csrf_exempt.
@csrf_exempt
@require_POST
def status_callback(request: HttpRequest) -> HttpResponse:
    if not _signed_by_twilio(request):
        return _plain(403, "Missing or invalid X-Twilio-Signature.")
    params = _params(request)
    if name := _too_long(params, "MessageSid", "SmsSid"):
        return _plain(400, f"{name} is longer than any Twilio id.")
    try:
        update = status_update_from_callback(params)
    except ValueError as exc:
        return _plain(400, str(exc))
    if update is not None:
        apply_status_update(update)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def incoming_sms(request: HttpRequest) -> HttpResponse:
    if not _signed_by_twilio(request):
        return _plain(403, "Missing or invalid X-Twilio-Signature.")
    params = _params(request)
    if name := _too_long(params, "MessageSid", "SmsMessageSid", "SmsSid", "From", "To"):
        return _plain(400, f"{name} is longer than any Twilio id or phone number.")
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid")
    missing = [
        name
        for name, value in (
            ("MessageSid", sid),
            ("From", params.get("From")),
            ("To", params.get("To")),
        )
        if not value
    ]
    if missing:
        return _plain(400, f"An incoming message needs {', '.join(missing)}.")
    receive_sms(
        from_phone=params["From"],
        to_phone=params["To"],
        body=params.get("Body", ""),
        provider_message_id=sid,
    )
    # Answers go through the outbox (rate limits, retries, history), never inline TwiML.
    return HttpResponse(str(MessagingResponse()), content_type="text/xml")
