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


# Backends that keep emails on the machine: right for `make run` and tests, never for
# patients.
LOCAL_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend": "printed on the console",
    "django.core.mail.backends.locmem.EmailBackend": "kept in memory",
    "django.core.mail.backends.filebased.EmailBackend": "written to files",
    "django.core.mail.backends.dummy.EmailBackend": "thrown away",
}


@checks.register(checks.Tags.security, deploy=True)
def local_email_backend_in_production(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    fate = LOCAL_EMAIL_BACKENDS.get(settings.EMAIL_BACKEND)
    if fate is None:
        return []
    return [
        checks.Warning(
            f"Patients' emails are {fate}, not sent (EMAIL_BACKEND {settings.EMAIL_BACKEND}).",
            hint="Set EMAIL_URL to your mail server, e.g. smtp://user:password@host:587/?tls=True",
            id="careline.W002",
        )
    ]
