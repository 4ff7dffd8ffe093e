import logging
import signal
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, connections

from careline.messaging.dispatch import Dispatcher

logger = logging.getLogger("careline.messaging.worker")
# The waitlist's periodic work (freed slots, expiring offers) rides along with the worker.
WAITLIST_EVERY_SECONDS = 15.0
DATABASE_RETRY_SECONDS = 2.0


def run_waitlist() -> None:
    from careline.waitlist.offers import run_due

    try:
        run_due()
    except (OperationalError, InterfaceError):
        connections.close_all()
    except Exception:  # a waitlist failure must never stop reminders going out
        logger.exception("Waitlist pass failed")


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
        from careline.messaging.gateways.base import get_gateway

        try:
            gateway = get_gateway(opts["gateway"])
        except (ValueError, ImportError) as exc:
            raise CommandError(str(exc)) from exc
        dispatcher = Dispatcher(gateway, batch_size=opts["batch_size"])
        if opts["once"]:
            run_waitlist()
            stats = dispatcher.run_once()
            self.stdout.write(_summary(stats))
            return

        def stop(signum, frame):
            dispatcher.stop_requested = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info("Worker started with the %s gateway", gateway.name)
        last_waitlist = 0.0
        while not dispatcher.stop_requested:
            if time.monotonic() - last_waitlist >= WAITLIST_EVERY_SECONDS:
                run_waitlist()
                last_waitlist = time.monotonic()
            before = sum(dispatcher.stats.values())
            try:
                dispatcher.run_once()
            except (OperationalError, InterfaceError):
                # The database went away (restart, failover): drop the dead connections and
                # try again shortly. Rows claimed before are reconciled, never resent blindly.
                logger.warning("Database unavailable; retrying in %.0f s", DATABASE_RETRY_SECONDS)
                connections.close_all()
                time.sleep(DATABASE_RETRY_SECONDS)
                continue
            if sum(dispatcher.stats.values()) == before and not dispatcher.stop_requested:
                time.sleep(opts["sleep"])
        logger.info("Worker stopped: %s", _summary(dispatcher.stats))


def _summary(stats) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "nothing due"
