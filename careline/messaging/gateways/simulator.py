"""The built-in gateway: texts land instantly on simulated patient phones (a table)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from careline.messaging.gateways.base import OutgoingSms, SendResult, SmsGateway
from careline.messaging.models import SimulatedPhoneMessage

PHONES = SimulatedPhoneMessage._meta.db_table
# "to" is an SQL keyword; quote it the way the database wants.
TO = connection.ops.quote_name("to")


class SimulatorGateway(SmsGateway):
    name = "simulator"

    def send(self, sms: OutgoingSms) -> SendResult:
        delay_ms = settings.CARELINE_SIMULATOR_DELAY_MS
        if delay_ms:
            time.sleep(delay_ms / 1000)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {PHONES} (outbound_message_id, {TO}, sender, body, "
                    "received_at, duplicate_sends) VALUES (%s, %s, %s, %s, %s, 0)",
                    [
                        sms.message_id,
                        sms.to,
                        sms.sender,
                        sms.body,
                        connection.ops.adapt_datetimefield_value(timezone.now()),
                    ],
                )
        except IntegrityError:
            # A real provider would deliver a second copy; record it so tests see it.
            SimulatedPhoneMessage.objects.filter(outbound_message_id=sms.message_id).update(
                duplicate_sends=F("duplicate_sends") + 1
            )
        return SendResult(provider_message_id=self._sid(sms.message_id), state="delivered")

    def find_sent(self, sms: OutgoingSms) -> SendResult | None:
        if SimulatedPhoneMessage.objects.filter(outbound_message_id=sms.message_id).exists():
            return SendResult(provider_message_id=self._sid(sms.message_id), state="delivered")
        return None

    @staticmethod
    def _sid(message_id: int) -> str:
        return f"SIM{message_id:010d}"
