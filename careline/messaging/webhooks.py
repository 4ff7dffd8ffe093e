"""Twilio's delivery-status webhook, and the request checks every Twilio webhook shares.

Each checks X-Twilio-Signature against the public URL Twilio called (CARELINE_BASE_URL +
path + query) and answers at once: the work behind it is a few row writes. Texts patients
send in arrive at careline.conversations.webhooks, which uses the checks here.
"""

from __future__ import annotations

import logging
import socket
import struct
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from careline.messaging.calls import find_call, record_status
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


def signed_by_twilio(request: HttpRequest) -> bool:
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


def plain_response(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def try_again_later(reason: str) -> HttpResponse:
    """503 with Retry-After: Twilio sends the request again later; nothing was stored."""
    response = plain_response(503, f"{reason} Try again later.")
    response["Retry-After"] = "1"
    return response


# struct tcp_info (linux/tcp.h): eight one-byte fields, then u32s; tcpi_last_data_recv
# is the 12th u32 (milliseconds since the kernel last received data on the socket).
_TCP_INFO_LAST_DATA_RECV = struct.Struct("=52xI")


def queued_seconds(request: HttpRequest) -> float | None:
    """How long the request waited in the server's queue before a worker read it: the time
    since its bytes reached the socket (Linux TCP_INFO). None where not known (not Linux,
    not gunicorn, the test client)."""
    sock = request.META.get("gunicorn.socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LAST_DATA_RECV.size)
    except OSError:
        return None
    if len(info) < _TCP_INFO_LAST_DATA_RECV.size:
        return None
    return _TCP_INFO_LAST_DATA_RECV.unpack(info)[0] / 1000


# Ids and numbers Twilio sends are short; anything longer is not a Twilio request.
MAX_ID_LENGTH = 64


def post_params(request: HttpRequest) -> dict[str, str]:
    """The POST fields without NUL characters, which no text column can store."""
    return {key: value.replace("\x00", "") for key, value in request.POST.items()}


def too_long(params: dict[str, str], *names: str) -> str:
    return next((n for n in names if len(params.get(n, "")) > MAX_ID_LENGTH), "")


# Twilio signs its requests instead of carrying a CSRF token, hence csrf_exempt.
@csrf_exempt
@require_POST
def status_callback(request: HttpRequest) -> HttpResponse:
    if not signed_by_twilio(request):
        return plain_response(403, "Missing or invalid X-Twilio-Signature.")
    params = post_params(request)
    if name := too_long(params, "MessageSid", "SmsSid"):
        return plain_response(400, f"{name} is longer than any Twilio id.")
    try:
        update = status_update_from_callback(params)
    except ValueError as exc:
        return plain_response(400, str(exc))
    if update is not None:
        apply_status_update(update)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def call_status(request: HttpRequest, token: str) -> HttpResponse:
    """A reminder call's progress (initiated, ringing, answered, completed, busy,
    no-answer, failed, canceled) with its length once it ended."""
    if not signed_by_twilio(request):
        return plain_response(403, "Missing or invalid X-Twilio-Signature.")
    params = post_params(request)
    if name := too_long(params, "CallSid", "CallStatus", "CallDuration"):
        return plain_response(400, f"{name} is longer than any Twilio value.")
    status = params.get("CallStatus", "")
    if not status:
        return plain_response(400, "A call status callback needs CallStatus.")
    raw_duration = params.get("CallDuration", "")
    if raw_duration and not (raw_duration.isascii() and raw_duration.isdigit()):
        return plain_response(400, "CallDuration must be a whole number of seconds.")
    call = find_call(token)
    if call is None:
        return plain_response(404, "No such call.")
    record_status(
        call,
        call_sid=params.get("CallSid", ""),
        status=status,
        duration=int(raw_duration) if raw_duration else None,
    )
    return HttpResponse(status=204)
