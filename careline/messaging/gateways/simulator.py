"""The built-in gateway: texts land instantly on simulated patient phones (a table)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from careline.messaging.gateways.base import OutgoingCall, OutgoingSms, SendResult, SmsGateway
from careline.messaging.models import SimulatedPhoneMessage

PHONES = SimulatedPhoneMessage._meta.db_table
# "to" is an SQL keyword; quote it the way the database wants.
TO = connection.ops.quote_name("to")
# One statement per send, as a real provider takes one request per message. A second send
# of the same message is not refused: a real phone would show a second copy, so the
# simulator counts it where tests look for it.
_DELIVER = (
    f"INSERT INTO {PHONES} (outbound_message_id, {TO}, sender, body, received_at, "
    "duplicate_sends) VALUES (%s, %s, %s, %s, %s, 0) "
    f"ON CONFLICT (outbound_message_id) DO UPDATE SET "
    f"duplicate_sends = {PHONES}.duplicate_sends + 1"
)


# What a simulated phone shows for a call, in place of a text.
RINGING = "Incoming call"


class SimulatorGateway(SmsGateway):
    name = "simulator"

    def send(self, sms: OutgoingSms) -> SendResult:
        delay_ms = settings.CARELINE_SIMULATOR_DELAY_MS
        if delay_ms:
            time.sleep(delay_ms / 1000)
        with connection.cursor() as cursor:
            cursor.execute(
                _DELIVER,
                [
                    sms.message_id,
                    sms.to,
                    sms.sender,
                    sms.body,
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                ],
            )
        return SendResult(provider_message_id=self._sid(sms.message_id), state="delivered")

    def place_call(self, call: OutgoingCall) -> SendResult:
        """The simulated phone rings: the call shows on /simulator/ with its words and a
        keypad, answered through the same dialog Twilio's webhooks drive."""
        with connection.cursor() as cursor:
            cursor.execute(
                _DELIVER,
                [
                    call.message_id,
                    call.to,
                    call.sender,
                    RINGING,
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                ],
            )
        return SendResult(provider_message_id=f"SIMCA{call.message_id:010d}", state="sent")

    def find_sent(self, sms: OutgoingSms) -> SendResult | None:
        if SimulatedPhoneMessage.objects.filter(outbound_message_id=sms.message_id).exists():
            return SendResult(provider_message_id=self._sid(sms.message_id), state="delivered")
        return None

    @staticmethod
    def _sid(message_id: int) -> str:
        return f"SIM{message_id:010d}"
