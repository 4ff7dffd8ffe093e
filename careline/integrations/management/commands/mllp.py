"""`careline mllp`: listen for HL7 v2 SIU messages over MLLP and acknowledge each one."""

from __future__ import annotations

import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError

from careline.integrations.hl7.mllp import serve
from careline.integrations.hl7.receiving import FeedSelector
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

    def handle(self, *args, **options) -> None:
        selector = feed_selector(options)
        try:
            asyncio.run(self._run(selector, options["host"], options["port"]))
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}"
            ) from exc

    async def _run(self, selector: FeedSelector, host: str, port: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(bound_host: str, bound_port: int) -> None:
            self.stdout.write(f"Listening for MLLP on {bound_host}:{bound_port}", ending="\n")
            self.stdout.flush()

        await serve(selector, host, port, stop=stop, on_ready=ready)
        self.stdout.write("MLLP listener stopped.")
