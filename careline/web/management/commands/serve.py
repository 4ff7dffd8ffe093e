import os
import signal
import subprocess
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand

from careline.integrations.hl7.writeback.queue import writeback_configured

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_TIMEOUT_SECONDS = 30


# Two web processes per core, each answering WEB_THREADS requests at once (gunicorn's
# gthread worker). A request spends much of its time waiting, not computing: a PostgreSQL
# round trip, SQLite's write lock, and after the answer gunicorn waits for the client to
# close the connection. A one-request-at-a-time (sync) process sits idle through each of
# those; under a burst of 500 webhooks a second its queue grew past a second while the
# cores were not busy (issue 21, docs/performance.md). The threads overlap the waits; the
# computing is still shared by the processes, one GIL each.
WEB_WORKERS_PER_CORE = 2
WEB_THREADS = 4
# Persistent database connections: a new one per request costs more than a stored text
# (SQLite's pragmas and file mapping, PostgreSQL's authentication).
DEFAULT_CONN_MAX_AGE = "60"


# The worker's work (reading stored texts, sending) can wait a moment; answering a
# webhook within Twilio's timeout cannot, so on a busy machine the web processes go first.
# Not on SQLite: there the worker holds the one write lock while it reads a text, and a
# worker starved of CPU would keep every webhook waiting for it.
WORKER_NICENESS = 10


def _background() -> None:
    os.nice(WORKER_NICENESS)


def default_web_workers() -> int:
    return max(2, WEB_WORKERS_PER_CORE * (os.cpu_count() or 1))


class _Stop(Exception):
    """SIGTERM or SIGINT reached `serve`."""


def _stop_children(children: list[subprocess.Popen]) -> None:
    """SIGTERM every child still running, wait for them, then SIGKILL the stragglers."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class Command(BaseCommand):
    help = "Serve the staff app, patient pages and APIs, with a background worker."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument(
            "--workers",
            type=int,
            default=default_web_workers(),
            help="Web worker processes (default: 2 per CPU core, at least 2)",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=WEB_THREADS,
            help=f"Requests each web process answers at once (default: {WEB_THREADS})",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="Do not start the message worker"
        )

    def handle(self, *args, **opts):
        from django.conf import settings
        from django.core.management.base import CommandError
        from django.db import connection

        if opts["workers"] < 1 or opts["threads"] < 1:
            raise CommandError("--workers and --threads must be at least 1.")
        if not settings.CARELINE_SMS_GATEWAY:
            raise CommandError(
                "No SMS gateway chosen: set CARELINE_SMS_GATEWAY=twilio (or =simulator for a "
                "demo, as `make run` does); the simulator is the default only with DEBUG on."
            )
        call_command("collectstatic", interactive=False, verbosity=0)
        children: list[subprocess.Popen] = []

        def stop(signum, frame):
            # systemd, Docker and Ctrl-C stop `serve`; gunicorn and the workers go with it.
            raise _Stop(signum)

        previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
        try:
            if not opts["no_worker"] and "worker" in self._commands():
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "careline", "worker"],
                        preexec_fn=None if connection.vendor == "sqlite" else _background,
                    )
                )
            if not opts["no_worker"] and writeback_configured():
                children.append(
                    subprocess.Popen([sys.executable, "-m", "careline", "hl7-writeback"])
                )
            web = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "careline.wsgi:application",
                    "--bind",
                    opts["bind"],
                    "--workers",
                    str(opts["workers"]),
                    "--worker-class",
                    "gthread",
                    "--threads",
                    str(opts["threads"]),
                    "--access-logfile",
                    "-",
                    "--access-logformat",
                    '%(h)s "%(m)s %(U)s" %(s)s %(M)sms',
                    # Patients' link tokens (/a/<token>) never reach the logs.
                    "--logger-class",
                    "careline.web.access_log.RedactingGunicornLogger",
                ],
                env={"CONN_MAX_AGE": DEFAULT_CONN_MAX_AGE, **os.environ},
            )
            children.append(web)
            self.stdout.write(f"Careline is serving at http://{opts['bind']}/ (Ctrl-C to stop)")
            web.wait()
        except (_Stop, KeyboardInterrupt):
            pass
        finally:
            # A second signal while stopping must not leave the children behind.
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            _stop_children(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @staticmethod
    def _commands():
        from django.core.management import get_commands

        return get_commands()
