"""What several fault tests share: the test database's URL for subprocesses, an outbox."""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import quote

from django.db import connection
from django.utils import timezone

from careline.clinics.models import Organization
from careline.messaging.models import MessageKind, OutboundMessage

PRACTICE_NUMBER = "+15125550100"


def database_url() -> str:
    """The URL of the database this test runs on, for `careline` subprocesses."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "")
    if s["PASSWORD"]:
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def careline_env(**extra: str) -> dict[str, str]:
    """Environment for a `careline` subprocess: quiet, and never the caller's Twilio."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    env.update(SECRET_KEY="fault-tests", LOG_LEVEL="WARNING")
    env.update(extra)
    return env


def patient_number(n: int) -> str:
    """A distinct, valid US mobile number per message, so each send can be counted."""
    return f"+1737{n // 10000 + 200:03d}{n % 10000:04d}"


def queue_texts(organization: Organization, count: int, body: str = "Message {n}") -> None:
    """`count` texts due now, one per number (replies: no quiet hours, caps or templates)."""
    now = timezone.now()
    OutboundMessage.objects.bulk_create(
        (
            OutboundMessage(
                organization=organization,
                kind=MessageKind.REPLY,
                priority=0,
                to_address=patient_number(n),
                sender=PRACTICE_NUMBER,
                body=body.format(n=n),
                due_at=now,
                expires_at=now + timedelta(days=1),
                created_at=now,
            )
            for n in range(count)
        ),
        batch_size=1000,
    )
