"""`careline worker`: reads patients' texts, sends due messages and, alongside, runs the
waitlist's periodic work.

Five passes in the one background harness (careline.background): the texts the Twilio
webhook stored (`conversations.inbound.interpret_waiting`, first, so an answer it queues
goes out in the same round), the dispatcher (essential: an error that is not the
database's stops the worker rather than letting reminders silently stop going out), the
waitlist every 15 seconds, the audience counts the broadcast page polls for (too large to
count in a request), no-show scoring every `CARELINE_NOSHOW_SCORING_SECONDS` (which decides
the extra touch for high-risk visits), and broadcasts (a recorded broadcast's texts are
queued here, not in the web request that recorded it), whose failures are logged and never
hold up the reminders.
"""

from __future__ import annotations

import logging
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from careline.analytics import risk
from careline.background import Pass, run_passes, run_round, summary
from careline.broadcasts.previews import count_waiting
from careline.broadcasts.sending import queue_broadcasts
from careline.conversations.inbound import interpret_waiting
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.base import get_gateway
from careline.waitlist import offers as waitlist

logger = logging.getLogger("careline.worker")
# The waitlist's periodic work (freed slots, expiring offers) rides along with the worker.
WAITLIST_EVERY_SECONDS = 15.0


def dispatcher_pass(dispatcher: Dispatcher) -> Pass:
    def run() -> Counter[str]:
        # run_once returns the dispatcher's running totals; a pass reports what it did.
        before = Counter(dispatcher.stats)
        return Counter(dispatcher.run_once()) - before

    def stop() -> None:
        # Finish the message in hand, then stop.
        dispatcher.stop_requested = True

    return Pass("dispatcher", run, essential=True, on_stop=stop)


def inbound_pass() -> Pass:
    def run() -> Counter[str]:
        # A pass that read nothing reports nothing (the summary says "nothing due").
        return +Counter(texts_interpreted=interpret_waiting())

    return Pass("inbound", run)


def waitlist_pass() -> Pass:
    def run() -> None:
        # Its counts are not the worker's: they neither show in the summary nor keep the
        # loop from sleeping, as before the harness.
        waitlist.run_due()

    return Pass("waitlist", run, every=WAITLIST_EVERY_SECONDS)


def broadcasts_pass() -> Pass:
    return Pass("broadcasts", queue_broadcasts)


def noshow_scoring_pass() -> Pass:
    """Score upcoming visits with each organization's no-show model, which also decides
    the extra touch for high-risk visits whose decision time has come."""

    def run() -> Counter[str]:
        return +Counter(visits_scored=risk.score_organizations())

    return Pass("noshow-scoring", run, every=settings.CARELINE_NOSHOW_SCORING_SECONDS)


def previews_pass() -> Pass:
    # Audience counts the compose page is waiting for (too large to count in a request).
    return Pass("broadcast previews", count_waiting)


class Command(BaseCommand):
    help = "Send due messages: reconcile interrupted sends, apply the compliance gate, send."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Do all due work, then exit.")
        parser.add_argument("--sleep", type=float, default=1.0, help="Seconds between passes.")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=200,
            help="Messages claimed per transaction (fewer with a rate limit).",
        )
        parser.add_argument("--gateway", help="Override CARELINE_SMS_GATEWAY for this run.")

    def handle(self, *args, **opts):
        if opts["batch_size"] < 1 or opts["sleep"] < 0:
            raise CommandError("--batch-size must be at least 1 and --sleep not negative.")
        try:
            gateway = get_gateway(opts["gateway"])
        except (ValueError, ImportError) as exc:
            raise CommandError(str(exc)) from exc
        dispatcher = Dispatcher(gateway, batch_size=opts["batch_size"])
        passes = [
            inbound_pass(),
            waitlist_pass(),
            previews_pass(),
            broadcasts_pass(),
            noshow_scoring_pass(),
            dispatcher_pass(dispatcher),
        ]
        if opts["once"]:
            done, database_down = run_round(passes, due_only=False)
            if database_down:
                raise CommandError("The database is unavailable.")
            self.stdout.write(summary(done))
            return
        logger.info("Worker started with the %s gateway", gateway.name)
        totals = run_passes(passes, sleep=opts["sleep"])
        logger.info("Worker stopped: %s", summary(totals))
