"""Twilio's webhook for texts patients send in: checked like every Twilio webhook
(careline.messaging.webhooks), then handed to careline.conversations.inbound."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from careline.conversations.inbound import receive_sms
from careline.messaging.webhooks import plain_response, post_params, signed_by_twilio, too_long


# Twilio signs its requests instead of carrying a CSRF token, hence csrf_exempt.
@csrf_exempt
@require_POST
def incoming_sms(request: HttpRequest) -> HttpResponse:
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
    receive_sms(
        from_phone=params["From"],
        to_phone=params["To"],
        body=params.get("Body", ""),
        provider_message_id=sid,
    )
    # Answers go through the outbox (rate limits, retries, history), never inline TwiML.
    return HttpResponse(str(MessagingResponse()), content_type="text/xml")
