"""Twilio's webhooks for a reminder call: the TwiML when it is answered, and each key
press. Checked like every Twilio webhook (careline.messaging.webhooks); the URL's token
names the call, and a token no call has is a 404 without a word about why."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from careline.conversations.calls import answer_call, answer_key
from careline.messaging.calls import find_call
from careline.messaging.webhooks import plain_response, post_params, signed_by_twilio, too_long


def _twiml(text: str) -> HttpResponse:
    return HttpResponse(text, content_type="text/xml; charset=utf-8")


# Twilio signs its requests instead of carrying a CSRF token, hence csrf_exempt.
@csrf_exempt
@require_POST
def call_answered(request: HttpRequest, token: str) -> HttpResponse:
    if not signed_by_twilio(request):
        return plain_response(403, "Missing or invalid X-Twilio-Signature.")
    params = post_params(request)
    if name := too_long(params, "CallSid", "AnsweredBy"):
        return plain_response(400, f"{name} is longer than any Twilio value.")
    call = find_call(token)
    if call is None:
        return plain_response(404, "No such call.")
    return _twiml(answer_call(call, params))


@csrf_exempt
@require_POST
def call_key_pressed(request: HttpRequest, token: str) -> HttpResponse:
    if not signed_by_twilio(request):
        return plain_response(403, "Missing or invalid X-Twilio-Signature.")
    params = post_params(request)
    if name := too_long(params, "CallSid", "Digits"):
        return plain_response(400, f"{name} is longer than any Twilio value.")
    call = find_call(token)
    if call is None:
        return plain_response(404, "No such call.")
    return _twiml(answer_key(call, params.get("Digits", "")))
