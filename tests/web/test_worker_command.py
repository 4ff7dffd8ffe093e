"""`careline worker` on the background harness: its passes, --once and its summary."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import OutboundMessage
from careline.messaging.outbox import queue_reply
from careline.web.management.commands import worker


def _reply(org, n: int) -> None:
    queue_reply(organization_id=org.id, to_phone=f"+1512555{n:04d}", body=f"#{n}")


def test_once_sends_what_is_due_and_prints_the_summary(build, monkeypatch):
    org = build.organization()
    _reply(org, 1)
    _reply(org, 2)
    ran = []
    monkeypatch.setattr(worker.waitlist, "run_due", lambda: ran.append(1) or {"offers": 5})
    out = StringIO()
    call_command("worker", "--once", "--gateway", "simulator", stdout=out)
    assert out.getvalue().strip() == "sent=2"
    assert ran == [1]
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"delivered"}

    out = StringIO()
    call_command("worker", "--once", "--gateway", "simulator", stdout=out)
    assert out.getvalue().strip() == "nothing due"


def test_the_dispatcher_pass_reports_what_this_pass_did_not_the_running_total(build):
    org = build.organization()
    dispatcher = Dispatcher(SimulatorGateway(), clock=timezone.now)
    dispatch = worker.dispatcher_pass(dispatcher)
    _reply(org, 1)
    assert dispatch.run() == {"sent": 1}
    _reply(org, 2)
    _reply(org, 3)
    assert dispatch.run() == {"sent": 2}
    assert dispatch.run() == {}
    assert dispatcher.stats["sent"] == 3


def test_passes_dispatcher_essential_and_stoppable_waitlist_every_15_seconds(db):
    dispatcher = Dispatcher(SimulatorGateway())
    dispatch = worker.dispatcher_pass(dispatcher)
    assert dispatch.essential and dispatch.every == 0
    dispatch.on_stop()
    assert dispatcher.stop_requested
    waitlist = worker.waitlist_pass()
    assert not waitlist.essential and waitlist.every == 15.0


def test_bad_options_are_refused(db):
    with pytest.raises(CommandError):
        call_command("worker", "--once", "--batch-size", "0")
    with pytest.raises(CommandError):
        call_command("worker", "--once", "--gateway", "carrier-pigeon")
