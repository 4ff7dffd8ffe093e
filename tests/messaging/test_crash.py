"""Kill the worker with SIGKILL at random moments while it sends; nothing is lost and
nothing is sent twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from careline.messaging.models import OutboundMessage, SimulatedPhoneMessage

MESSAGES = 2000


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "")
    if s["PASSWORD"]:
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_sigkilled_worker_delivers_every_message_exactly_once(build):
    org = build.organization()
    now = timezone.now()
    OutboundMessage.objects.bulk_create(
        OutboundMessage(
            organization=org,
            kind="reply",
            priority=0,
            to_address=f"+1512555{i:04d}",
            sender="+15125550100",
            body=f"Message {i}",
            due_at=now,
            expires_at=now + timezone.timedelta(hours=1),
            created_at=now,
        )
        for i in range(MESSAGES)
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": "crash-test",
        "CARELINE_SMS_GATEWAY": "simulator",
        "CARELINE_SIMULATOR_DELAY_MS": "1",
        # A single worker at a time: whatever the dead one left in `sending` is reconciled.
        "CARELINE_WORKER_LEASE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    rng = random.Random(1234)
    kills = 0
    for _ in range(40):
        worker = subprocess.Popen(
            [sys.executable, "-m", "careline", "worker", "--once", "--batch-size", "20"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        if kills < 8:
            time.sleep(rng.uniform(0.4, 1.6))
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                kills += 1
        assert worker.wait(timeout=120) in (0, -signal.SIGKILL)
        if not OutboundMessage.objects.exclude(state="delivered").exists():
            break
    assert kills >= 3, "the worker finished before it could be killed; the test proves nothing"
    assert OutboundMessage.objects.filter(state="delivered").count() == MESSAGES
    assert SimulatedPhoneMessage.objects.count() == MESSAGES
    assert SimulatedPhoneMessage.objects.aggregate(d=Sum("duplicate_sends"))["d"] == 0
