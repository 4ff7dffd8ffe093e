"""`careline mllp`: listen for HL7 v2 SIU messages over MLLP and acknowledge each one."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

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

        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="Listener processes sharing the port (SO_REUSEPORT; the kernel spreads "
            "connections over them). PostgreSQL only: one process applies messages on one "
            "core (default: %(default)s).",
        )
        # Set by --processes on the processes it starts.
        parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args, **options) -> None:
        limits = _limits(options)
        selector = feed_selector(options)
        if options["processes"] != 1:
            self._run_processes(options)
            return
        try:
            asyncio.run(
                self._run(selector, options["host"], options["port"], limits, options["reuse_port"])
            )
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}"
            ) from exc

    def _run_processes(self, options: dict) -> None:
        """Start `--processes` listeners on one port and wait for them; SIGTERM or SIGINT
        stops them all, and one that dies stops the others (the service manager restarts
        the lot)."""
        count = options["processes"]
        if count < 1:
            raise CommandError("--processes must be at least 1.")
        if connection.vendor != "postgresql":
            raise CommandError(
                "--processes needs PostgreSQL: SQLite takes one writer at a time, so a "
                "second process would only wait for the first. Use --processes 1."
            )
        if options["port"] == 0:
            raise CommandError("--processes needs a fixed --port for them to share.")
        argv = [sys.executable, "-m", "careline", "mllp", "--processes", "1", "--reuse-port"]
        for name in (
            "port",
            "host",
            "organization",
            "feed",
            "idle_timeout",
            "max_connections",
            "max_frame_bytes",
            "keep_rejected",
            "keep_rejected_days",
        ):
            argv += [f"--{name.replace('_', '-')}", str(options[name])]
        children = [subprocess.Popen(argv) for _ in range(count)]
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        failed = 0
        while any(child.poll() is None for child in children):
            for child in children:
                try:
                    code = child.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                if code and not stopping:
                    failed = code
                    stop(None, None)
        if failed:
            raise CommandError(f"A listener process exited with status {failed}.")
        self.stdout.write(f"{count} MLLP listener processes stopped.")

    async def _run(
        self,
        selector: FeedSelector,
        host: str,
        port: int,
        limits: MllpLimits,
        reuse_port: bool = False,
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(bound_host: str, bound_port: int) -> None:
            self.stdout.write(f"Listening for MLLP on {bound_host}:{bound_port}", ending="\n")
            self.stdout.flush()

        await serve(
            selector, host, port, stop=stop, on_ready=ready, limits=limits, reuse_port=reuse_port
        )
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
