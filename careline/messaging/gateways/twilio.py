"""Twilio as the SMS gateway: sends through the Messages REST API, reads its webhooks.

Error messages are written here, not copied from Twilio: Twilio's own text can quote the
recipient's number, and these messages end up in logs and on staff screens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from careline.messaging.gateways.base import (
    GatewayError,
    OutgoingCall,
    OutgoingSms,
    SendResult,
    SmsGateway,
    StatusUpdate,
)
from careline.messaging.models import OutboundMessage
from careline.messaging.visit_links import REDACTED_TOKEN

log = logging.getLogger(__name__)
# The twilio client logs every request's query string at INFO, and list queries carry the
# patient's number (To=...): keep its chatter to warnings, whatever the root level.
http_log = logging.getLogger(f"{__name__}.http")
http_log.setLevel(logging.WARNING)

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"

# Twilio error codes that will fail the same way on every retry.
PERMANENT_ERRORS = {
    21211: "the number is not a valid phone number",
    21408: "texting this region is not enabled on the Twilio account",
    21610: "the recipient opted out of texts from this sender (replied STOP)",
    21612: "Twilio cannot route a text to this number",
    21614: "the number is not a mobile number",
    21617: "the message is longer than Twilio accepts",
}
# Codes worth retrying with backoff; HTTP 429 and 5xx are retried whatever their code.
TRANSIENT_ERRORS = {
    20003: "Twilio refused the credentials (check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)",
    20429: "Twilio is rate limiting requests",
}
OPTED_OUT_CODE = "21610"

# Twilio's call progress events Careline asks to hear about (status_callback_event).
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]

# Twilio's message statuses that move the outbox forward; the others (queued, accepted,
# sending, scheduled, ...) say nothing the outbox does not already know.
STATUS_MAP = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}

# Characters a Messaging Service's Smart Encoding replaces with GSM-7 ones.
SMART_ENCODING = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u2013": "-", "\u2014": "-", "\u2011": "-", "\u2212": "-",
        "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u200b": "",
    }
)  # fmt: skip
# How far back reconciliation looks when the row cannot be read.
RECONCILE_WINDOW = timedelta(days=2)
CLOCK_SKEW = timedelta(minutes=5)


class RebasedHttpClient(TwilioHttpClient):
    """Sends the client's requests to another scheme and host, keeping path and query.

    The twilio package hard-codes https://api.twilio.com; swapping the HTTP client is the
    extension point its maintainers recommend for pointing it at a local server.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=http_log)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args, **kwargs) -> Response:
        parts = urlsplit(url)
        rebased = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, rebased, *args, **kwargs)


def _require(name: str) -> str:
    value = getattr(settings, name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set to send texts through Twilio.")
    return value


def status_callback_url() -> str:
    return settings.CARELINE_BASE_URL + STATUS_CALLBACK_PATH


def error_from_twilio(exc: TwilioRestException | TwilioServiceException) -> GatewayError:
    """Classify a refusal from Twilio's API as permanent or worth retrying."""
    code = int(exc.code) if exc.code else None
    status = int(exc.status or 0)
    label = f"Twilio error {code}" if code else f"Twilio HTTP {status}"
    if code in PERMANENT_ERRORS:
        return GatewayError(f"{label}: {PERMANENT_ERRORS[code]}", code=str(code))
    if code in TRANSIENT_ERRORS:
        return GatewayError(f"{label}: {TRANSIENT_ERRORS[code]}", code=str(code), transient=True)
    if status == 429 or status >= 500:
        return GatewayError(
            f"{label}: Twilio is unavailable or busy (HTTP {status})",
            code=str(code or status),
            transient=True,
        )
    return GatewayError(
        f"{label}: Twilio refused the message (HTTP {status}); "
        f"see https://www.twilio.com/docs/errors/{code or status}",
        code=str(code or status),
    )


class TwilioGateway(SmsGateway):
    name = "twilio"

    def __init__(self) -> None:
        account_sid = _require("TWILIO_ACCOUNT_SID")
        auth_token = _require("TWILIO_AUTH_TOKEN")
        timeout = settings.TWILIO_TIMEOUT_SECONDS
        base_url = settings.TWILIO_API_BASE_URL
        http_client = (
            RebasedHttpClient(base_url, timeout)
            if base_url
            else TwilioHttpClient(timeout=timeout, logger=http_log)
        )
        self.client = Client(account_sid, auth_token, http_client=http_client)
        self.messaging_service_sid = settings.TWILIO_MESSAGING_SERVICE_SID

    def _sender_params(self, sender: str) -> dict[str, str]:
        """From and/or MessagingServiceSid for a sender (a number or an MG… service SID).

        With a service configured, a number still goes as From so the patient sees their
        practice's number; Twilio then applies the service's features to it.
        """
        sender = sender or self.messaging_service_sid or settings.TWILIO_FROM_NUMBER
        if not sender:
            raise GatewayError(
                "No sender: set the practice's texting number, TWILIO_FROM_NUMBER or "
                "TWILIO_MESSAGING_SERVICE_SID.",
                code="no_sender",
            )
        if sender.startswith("MG"):
            return {"messaging_service_sid": sender}
        params = {"from_": sender}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        return params

    def send(self, sms: OutgoingSms) -> SendResult:
        try:
            message = self.client.messages.create(
                to=sms.to,
                body=sms.body,
                status_callback=sms.status_callback_url or status_callback_url(),
                **self._sender_params(sms.sender),
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise error_from_twilio(exc) from exc
        except requests.Timeout as exc:
            # The request may have reached Twilio: the worker reconciles before resending.
            raise GatewayError(
                "Twilio did not answer in time", code="timeout", transient=True
            ) from exc
        except requests.RequestException as exc:
            raise GatewayError(
                f"Could not reach Twilio ({type(exc).__name__})", code="network", transient=True
            ) from exc
        return SendResult(
            provider_message_id=message.sid,
            state="delivered" if message.status == "delivered" else "sent",
        )

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Start a reminder call: Twilio fetches `twiml_url` once answered, with AnsweredBy
        from machine detection in that same request (DetectMessageEnd waits for a
        voicemail greeting to end, so the message is recorded whole)."""
        sender = call.sender if call.sender.startswith("+") else ""
        sender = sender or settings.TWILIO_VOICE_FROM_NUMBER or settings.TWILIO_FROM_NUMBER
        if not sender:
            raise GatewayError(
                "No number to call from: set the practice's number or TWILIO_VOICE_FROM_NUMBER.",
                code="no_sender",
            )
        try:
            created = self.client.calls.create(
                to=call.to,
                from_=sender,
                url=call.twiml_url,
                method="POST",
                status_callback=call.status_callback_url,
                status_callback_event=CALL_EVENTS,
                status_callback_method="POST",
                machine_detection="DetectMessageEnd",
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise error_from_twilio(exc) from exc
        except requests.Timeout as exc:
            raise GatewayError(
                "Twilio did not answer in time", code="timeout", transient=True
            ) from exc
        except requests.RequestException as exc:
            raise GatewayError(
                f"Could not reach Twilio ({type(exc).__name__})", code="network", transient=True
            ) from exc
        return SendResult(provider_message_id=created.sid, state="sent")

    def find_sent(self, sms: OutgoingSms) -> SendResult | None:
        """Look for this message in the account's history: same To, same sender, same body,
        created after the row was, and not already another row's.

        Raises GatewayError when Twilio cannot be asked: not knowing is not "not sent".
        """
        sender = self._sender_params(sms.sender)
        filters: dict[str, str] = {"to": sms.to}
        if "from_" in sender:
            filters["from_"] = sender["from_"]
        not_before = _send_window_start(sms.message_id)
        try:
            # Sent messages by DateSent (a day filter), then the newest page for messages
            # still queued at Twilio, which have no DateSent yet.
            sent = self.client.messages.stream(
                **filters, date_sent_after=not_before.date().isoformat(), page_size=100
            )
            queued = (
                m
                for m in self.client.messages.stream(**filters, limit=100, page_size=100)
                if m.date_sent is None
            )
            candidates = [
                m
                for found in (sent, queued)
                for m in found
                if _is_copy_of(m, sms, sender) and m.date_created >= not_before
            ]
        except (TwilioRestException, TwilioServiceException) as exc:
            error = error_from_twilio(exc)
            raise GatewayError(
                f"Reconciliation failed: {error}", code=error.code, transient=True
            ) from exc
        except TwilioException as exc:
            # Pages after the first fail with a bare TwilioException.
            raise GatewayError(
                "Reconciliation failed: Twilio did not return the message list",
                code="list_failed",
                transient=True,
            ) from exc
        except requests.RequestException as exc:
            raise GatewayError(
                f"Reconciliation failed: could not reach Twilio ({type(exc).__name__})",
                code="network",
                transient=True,
            ) from exc
        # Two reminders for one visit can read the same; each Twilio message is one row's.
        taken = set(
            OutboundMessage.objects.filter(provider_message_id__in=[m.sid for m in candidates])
            .exclude(pk=sms.message_id)
            .values_list("provider_message_id", flat=True)
        )
        for message in candidates:
            if message.sid not in taken:
                return SendResult(
                    provider_message_id=message.sid,
                    state="delivered" if message.status == "delivered" else "sent",
                )
        return None


def _send_window_start(message_id: int) -> datetime:
    """The earliest time Twilio can have created this row's message: when the row was
    created (no attempt can be older), less some clock difference between us and Twilio.
    Not the claim time: a retry or a reconciler re-claims the row after the attempt."""
    created_at = (
        OutboundMessage.objects.filter(pk=message_id).values_list("created_at", flat=True).first()
    )
    return (created_at or timezone.now() - RECONCILE_WINDOW) - CLOCK_SKEW


def _comparable(body: str) -> str:
    return " ".join((body or "").translate(SMART_ENCODING).split())


def _same_text(theirs: str, ours: str) -> bool:
    """Whether Twilio's text starts with ours. Ours is the stored text, with a link's token
    redacted (the provider got some token there): that part matches any token."""
    if REDACTED_TOKEN not in ours:
        return theirs.startswith(ours)
    pattern = "[A-Za-z0-9_-]+".join(re.escape(part) for part in ours.split(REDACTED_TOKEN))
    return re.match(pattern, theirs) is not None


def _is_copy_of(message, sms: OutgoingSms, sender: dict[str, str]) -> bool:
    """Same direction, sender and text. A Messaging Service may have rewritten the text
    (Smart Encoding swaps typographic characters; compliance settings append opt-out
    words), so the text is compared after those rewrites, as a prefix."""
    ours = _comparable(sms.body)
    if not ours or not (message.direction or "").startswith("outbound"):
        return False
    if not _same_text(_comparable(message.body), ours):
        return False
    return "from_" in sender or message.messaging_service_sid == sender["messaging_service_sid"]


def signature_is_valid(url: str, params: Mapping, signature: str, settings_header: str) -> bool:
    """Check X-Twilio-Signature for a webhook request Twilio made to `url` with `params`.

    An unset auth token rejects everything: an empty HMAC key would let anyone sign.
    """
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        log.error("TWILIO_AUTH_TOKEN is not set: refusing Twilio webhooks")
        return False
    if not signature:
        return False
    algorithm = get_signature_algorithm(settings_header)
    return RequestValidator(token).validate(url, params, signature, algorithm)


def status_update_from_callback(params: Mapping[str, str]) -> StatusUpdate | None:
    """The outbox change a status callback asks for; None for statuses that change nothing.

    Raises ValueError naming the missing field when the callback is not a message status.
    """
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not status:
        raise ValueError("A status callback needs MessageSid and MessageStatus.")
    state = STATUS_MAP.get(status.lower())
    if state is None:
        return None
    return StatusUpdate(
        provider_message_id=sid, state=state, error_code=params.get("ErrorCode", "")
    )
