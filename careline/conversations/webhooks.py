"""Twilio's webhook for texts patients send in: checked like every Twilio webhook
(careline.messaging.webhooks), then stored by careline.conversations.inbound.

It only stores the text (one INSERT, committed before the answer) and answers with empty
TwiML; `careline worker` interprets it and sends any answer through the outbox. A text
that waited too long for a web process or for the database's write lock is refused
with 503 + Retry-After, unstored, so Twilio sends it again instead of a queue growing.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from careline.conversations.inbound import InboundBusy, store_sms
from careline.messaging.webhooks import (
    plain_response,
    post_params,
    queued_seconds,
    signed_by_twilio,
    too_long,
    try_again_later,
)

_EMPTY_TWIML = str(MessagingResponse())


# Twilio signs its requests instead of carrying a CSRF token, hence csrf_exempt.
@csrf_exempt
@require_POST
def incoming_sms(request: HttpRequest) -> HttpResponse:
    max_wait = settings.CARELINE_WEBHOOK_MAX_WAIT_SECONDS
    waited = queued_seconds(request)
    if waited is not None and waited > max_wait:
        # Already late: answering now keeps the queue behind it from growing.
        return try_again_later("The server is busy.")
    if not signed_by_twilio(request):
        return plain_response(403, "Missing or invalid X-Twilio-Signature.")
    params = post_params(request)
    if name := too_long(params, "MessageSid", "SmsMessageSid", "SmsSid", "From", "To"):
        return plain_response(400, f"{name} is longer than any Twilio id or phone number.")
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
        return plain_response(400, f"An incoming message needs {', '.join(missing)}.")
    try:
        store_sms(
            from_phone=params["From"],
            to_phone=params["To"],
            body=params.get("Body", ""),
            provider_message_id=sid,
            wait_seconds=max_wait - (waited or 0.0),
        )
    except InboundBusy:
        return try_again_later("The database is busy.")
    # Answers go through the outbox (rate limits, retries, history), never inline TwiML.
    return HttpResponse(_EMPTY_TWIML, content_type="text/xml")
