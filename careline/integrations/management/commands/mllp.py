"""`careline mllp`: listen for HL7 v2 SIU messages over MLLP and acknowledge each one."""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from careline.integrations.hl7.mllp import MllpLimits, serve
from careline.integrations.hl7.receiving import FeedSelector, RejectedRetention
from careline.integrations.management.feeds import feed_selector


class Command(BaseCommand):
    help = (
        "Run an MLLP listener for HL7 v2 SIU scheduling messages (S12, S13, S14, S15, S17, "
        "S26). Each message is stored, applied and answered with AA, AE or AR. Messages go "
        "to the only active feed in scope, else to the feed whose sending application "
        "matches MSH-3."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=2575)
        parser.add_argument(
            "--host", default="127.0.0.1", help="Interface to bind (default: %(default)s)."
        )
        parser.add_argument("--organization", default="", help="Organization slug to serve.")
        parser.add_argument("--feed", default="", help="Feed name to serve.")
        parser.add_argument(
            "--idle-timeout",
            type=float,
            default=settings.CARELINE_MLLP_IDLE_TIMEOUT_SECONDS,
            help="Close a connection that delivers no complete message for this many "
            "seconds; 0: never (default: %(default)s, CARELINE_MLLP_IDLE_TIMEOUT_SECONDS).",
        )
        parser.add_argument(
            "--max-connections",
            type=int,
            default=settings.CARELINE_MLLP_MAX_CONNECTIONS,
            help="Connections served at once; one more is closed at once "
            "(default: %(default)s, CARELINE_MLLP_MAX_CONNECTIONS).",
        )
        parser.add_argument(
            "--max-frame-bytes",
            type=int,
            default=settings.CARELINE_MLLP_MAX_FRAME_BYTES,
            help="Largest message accepted; a larger one is answered AR "
            "(default: %(default)s, CARELINE_MLLP_MAX_FRAME_BYTES).",
        )
        parser.add_argument(
            "--keep-rejected",
            type=int,
            default=settings.CARELINE_HL7_REJECTED_KEEP,
            help="Refused messages kept per feed; 0: no count limit "
            "(default: %(default)s, CARELINE_HL7_REJECTED_KEEP).",
        )
        parser.add_argument(
            "--keep-rejected-days",
            type=int,
            default=settings.CARELINE_HL7_REJECTED_DAYS,
            help="Days refused messages are kept; 0: no age limit "
            "(default: %(default)s, CARELINE_HL7_REJECTED_DAYS).",
        )

    def handle(self, *args, **options) -> None:
        limits = _limits(options)
        selector = feed_selector(options)
        try:
            asyncio.run(self._run(selector, options["host"], options["port"], limits))
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}"
            ) from exc

    async def _run(self, selector: FeedSelector, host: str, port: int, limits: MllpLimits) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(bound_host: str, bound_port: int) -> None:
            self.stdout.write(f"Listening for MLLP on {bound_host}:{bound_port}", ending="\n")
            self.stdout.flush()

        await serve(selector, host, port, stop=stop, on_ready=ready, limits=limits)
        self.stdout.write("MLLP listener stopped.")


def _limits(options: dict) -> MllpLimits:
    for name in ("idle_timeout", "keep_rejected", "keep_rejected_days"):
        if options[name] < 0:
            raise CommandError(f"--{name.replace('_', '-')} cannot be negative.")
    for name in ("max_connections", "max_frame_bytes"):
        if options[name] < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
    return MllpLimits(
        idle_timeout=options["idle_timeout"],
        max_connections=options["max_connections"],
        max_frame_bytes=options["max_frame_bytes"],
        retention=RejectedRetention(
            keep=options["keep_rejected"], days=options["keep_rejected_days"]
        ),
    )
