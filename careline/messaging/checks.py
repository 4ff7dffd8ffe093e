"""System checks for messaging: `careline check --deploy` warns about the simulator."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def simulator_gateway_in_production(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if settings.CARELINE_SMS_GATEWAY != "simulator":
        return []
    return [
        checks.Warning(
            "The simulator SMS gateway is in use: no text reaches a patient, and the "
            "/simulator/ page shows what would have been sent.",
            hint="Set CARELINE_SMS_GATEWAY=twilio (with its TWILIO_* settings) in production.",
            id="careline.W001",
        )
    ]
