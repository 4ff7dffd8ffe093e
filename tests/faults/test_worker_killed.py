"""The worker is SIGKILLed at random moments while it sends, trial after trial: every
message still reaches its phone exactly once.

Each kill lands at a random point of the send (a random count of texts already on the
phones, plus a random few milliseconds), so it hits the worker between the provider call
and the write that records it: the rows it leaves in `sending` must be reconciled with
the (simulated) provider, never resent blindly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db.models import F, Sum

from careline.messaging.models import MessageState, OutboundMessage, SimulatedPhoneMessage
from tests.faults.support import careline_env, database_url, queue_texts

REPO = Path(__file__).resolve().parents[2]
KILLS_PER_TRIAL = 3
WORKER = ["worker", "--once", "--batch-size", "20"]
TRIALS = [pytest.param(n, 200, id=f"trial{n}") for n in range(3)] + [
    pytest.param(n, 2000, id=f"full{n}", marks=pytest.mark.soak) for n in range(20)
]


class Workers:
    """`careline worker` processes, forked from one that has Careline imported already
    (tests/faults/zygote.py), so that a restart costs milliseconds, not seconds."""

    def __init__(self, env: dict[str, str]) -> None:
        self.zygote = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.zygote"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self) -> int:
        self.zygote.stdin.write(" ".join(WORKER) + "\n")
        self.zygote.stdin.flush()
        return int(self.zygote.stdout.readline())

    def wait(self) -> int:
        """The exit status of the worker started last (negative: killed by that signal)."""
        line = self.zygote.stdout.readline()
        assert line.startswith("exit "), f"the zygote died: {line!r}"
        return int(line.split()[1])

    def close(self) -> None:
        self.zygote.stdin.close()
        self.zygote.wait(timeout=30)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_when(workers: Workers, pid: int, phones_at_least: int, jitter: float) -> bool:
    """SIGKILL the worker once that many texts reached phones (plus jitter). Returns
    whether it was killed (False: it finished first)."""
    while _running(pid) and SimulatedPhoneMessage.objects.count() < phones_at_least:
        time.sleep(0.02)
    time.sleep(jitter)
    if _running(pid):
        os.kill(pid, signal.SIGKILL)
    return workers.wait() == -signal.SIGKILL


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("trial", "messages"), TRIALS)
def test_sigkilled_worker_delivers_every_message_exactly_once(build, trial, messages):
    queue_texts(build.organization(), messages)
    env = careline_env(
        DATABASE_URL=database_url(),
        CARELINE_SMS_GATEWAY="simulator",
        CARELINE_SIMULATOR_DELAY_MS="3",
        # One worker at a time: whatever the dead one left in `sending` is reconciled now.
        CARELINE_WORKER_LEASE_SECONDS="0",
    )
    rng = random.Random(f"worker-kill-{trial}-{messages}")
    targets = sorted(rng.sample(range(1, messages - 60), KILLS_PER_TRIAL))
    left_in_sending = []
    workers = Workers(env)
    try:
        for target in targets:
            pid = workers.start()
            if not _kill_when(workers, pid, target, rng.uniform(0, 0.03)):
                break  # it finished first: nothing left to interrupt
            left_in_sending.append(
                OutboundMessage.objects.filter(state=MessageState.SENDING).count()
            )
        workers.start()
        assert workers.wait() == 0
    finally:
        workers.close()

    # The kills caught sends in flight, so reconciliation was really exercised.
    assert len(left_in_sending) >= 2 and sum(left_in_sending) > 0, left_in_sending
    assert OutboundMessage.objects.filter(state=MessageState.DELIVERED).count() == messages
    assert SimulatedPhoneMessage.objects.count() == messages
    assert SimulatedPhoneMessage.objects.aggregate(d=Sum("duplicate_sends"))["d"] == 0
    # Each phone got its own text, from the row that was meant for it.
    assert not OutboundMessage.objects.exclude(simulated_delivery__to=F("to_address")).exists()
