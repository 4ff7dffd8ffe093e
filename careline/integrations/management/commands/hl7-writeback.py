"""`careline hl7-writeback`: send what patients did back to the EHR feeds over MLLP."""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from careline.integrations.hl7.writeback import run_once, writeback_configured

logger = logging.getLogger("careline.integrations.writeback")


class Command(BaseCommand):
    help = (
        "Send patients' confirmations (SIU S14), cancellations (S15), reschedules (S13), "
        "online bookings (S12) and texting opt-outs/opt-ins (ADT A31) to every HL7 feed "
        "that has an outbound host and port, in order per appointment, with retries."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Do all due work, then exit.")
        parser.add_argument("--sleep", type=float, default=5.0, help="Seconds between passes.")
        parser.add_argument("--batch-size", type=int, default=50)
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="Seconds to wait for each ACK."
        )

    def handle(self, *args, **opts) -> None:
        if opts["batch_size"] < 1 or opts["sleep"] < 0 or opts["timeout"] <= 0:
            raise CommandError(
                "--batch-size must be at least 1, --sleep not negative, --timeout positive."
            )
        run = {"batch_size": opts["batch_size"], "timeout": opts["timeout"]}
        if not writeback_configured():
            self.stdout.write(
                "No active HL7 feed has an outbound host and port; nothing is written back "
                "until one does (admin: Integrations › HL7 feeds)."
            )
            if opts["once"]:
                return
        if opts["once"]:
            self.stdout.write(_summary(run_once(**run)))
            return

        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
        logger.info("HL7 write-back started")
        while not stop.is_set():
            try:
                stats = run_once(**run)
            except DatabaseError as exc:
                # The database restarted or dropped us; the next pass reconnects.
                logger.error("HL7 write-back pass failed: %s", type(exc).__name__)
                connection.close()
                stats = None
            if not stats:
                stop.wait(opts["sleep"])
        logger.info("HL7 write-back stopped")


def _summary(stats) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "nothing due"
