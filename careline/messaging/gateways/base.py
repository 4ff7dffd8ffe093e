"""The one small interface every SMS gateway implements (simulator, Twilio, ...)."""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class OutgoingSms:
    message_id: int  # OutboundMessage.pk
    to: str  # E.164
    sender: str  # E.164 number or a Twilio Messaging Service SID (MG…)
    body: str
    status_callback_url: str | None


@dataclass(frozen=True)
class OutgoingCall:
    message_id: int  # OutboundMessage.pk (channel voice)
    to: str  # E.164
    sender: str  # E.164 number the patient sees calling
    twiml_url: str  # what Twilio fetches when the call is answered (carries the call's token)
    status_callback_url: str


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    state: str  # "sent" (accepted by the provider) or "delivered"


class GatewayError(Exception):
    """A send that did not happen. Permanent errors (e.g. Twilio 21610 recipient opted out,
    21211 invalid number) have transient=False; timeouts, 5xx and 429 have transient=True."""

    def __init__(self, message: str, *, code: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    state: str  # sent | delivered | undelivered | failed
    error_code: str = ""


class SmsGateway(abc.ABC):
    name: str

    @abc.abstractmethod
    def send(self, sms: OutgoingSms) -> SendResult:
        """Hand one message to the provider; raise GatewayError when it was not accepted."""

    @abc.abstractmethod
    def find_sent(self, sms: OutgoingSms) -> SendResult | None:
        """Reconcile a row left in `sending` after a crash: did the provider already accept
        this message? None means it certainly did not, so it may be sent again."""

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Start one automated call; raise GatewayError when the provider refused it."""
        raise GatewayError(f"The {self.name} gateway cannot place calls.", code="no_voice")


GATEWAYS = {
    "simulator": "careline.messaging.gateways.simulator.SimulatorGateway",
    "twilio": "careline.messaging.gateways.twilio.TwilioGateway",
}


def get_gateway(name: str | None = None) -> SmsGateway:
    """The configured gateway (settings.CARELINE_SMS_GATEWAY), imported lazily so the
    twilio package is only loaded where it is used."""
    name = name or getattr(settings, "CARELINE_SMS_GATEWAY", "")
    if not name:
        raise ValueError(
            "No SMS gateway chosen: set CARELINE_SMS_GATEWAY to twilio (or to simulator for a "
            "demo; the simulator is the default only with DEBUG on)."
        )
    try:
        dotted = GATEWAYS[name]
    except KeyError:
        raise ValueError(
            f"Unknown SMS gateway {name!r}; choose one of: {', '.join(sorted(GATEWAYS))}"
        ) from None
    module_name, class_name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)()
