"""SIU^S12 throughput over MLLP: messages per second on one connection and on eight.

Runs against a throwaway database (Django's test database for the configured
DATABASE_URL, SQLite by default; `--database postgres` or `both` picks for you) and a
listener on a random local port, in this process. Every message is a new appointment
(S12) for a new patient: stored raw, applied (visit and patient stored, reminders
planned) and acknowledged AA; the run fails unless every one of them was.

Baseline (the ceiling of the same machine in the same run): a raw MLLP echo server on
the same event-loop machinery, answering each frame at once with a fixed ACK, driven by
the same clients at the same number of connections.

    .venv/bin/python bench/hl7_mllp.py [--messages 2000] [--database sqlite|postgres|both]

Prints `name | value | baseline | ratio` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")

CONNECTIONS = 8
# Listener processes for the PostgreSQL figure of `careline mllp --processes`.
PROCESSES = 2
_ECHO_ACK = (
    "MSH|^~\\&|CARELINE|CARELINE|BENCH|CLINIC|20261201080000||ACK^S12^ACK|1|P|2.5.1\rMSA|AA|1\r"
)


def _siu(n: int, prefix: str) -> str:
    start = (datetime(2027, 1, 4, 13, 0, tzinfo=UTC) + timedelta(minutes=20 * n)).strftime(
        "%Y%m%d%H%M%S+0000"
    )
    return (
        "\r".join(
            [
                f"MSH|^~\\&|BENCH|CLINIC|CARELINE|CARELINE|20261201080000||SIU^S12|{prefix}{n}|P|2.5.1",
                f"SCH||{prefix}{n}|||||||20|min|^^20^{start}" + "|" * 14 + "Booked",
                f"PID|1||{prefix}M{n}^^^BENCH^MR||Patient^Bench||19800101|F|||||"
                f"^ORN^CP^^1^518^555{n % 10000:04d}",
                "AIS|1|A|FU20^FOLLOW UP",
                "AIL|1|A|BENCH",
                f"AIP|1|A|DOC{n % 10}^Doctor^Bench",
            ]
        )
        + "\r"
    )


def _send(host: str, port: int, messages: list[str]) -> None:
    from careline.integrations.hl7.mllp import MllpClient

    with MllpClient(host, port) as client:
        for message in messages:
            ack = client.send(message)
            if "MSA|AA|" not in ack:
                raise RuntimeError(f"not accepted: {ack.split(chr(13))[1]}")


def _rate(host: str, port: int, batches: list[list[str]]) -> float:
    """Messages per second of `len(batches)` clients, each sending its batch in turn."""
    errors: list[BaseException] = []

    def send(batch: list[str]) -> None:
        try:
            _send(host, port, batch)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]}")
    return sum(len(b) for b in batches) / seconds


class _EchoServer:
    """MLLP without Careline: each frame answered at once with a fixed ACK."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        from careline.integrations.hl7.mllp import END_BLOCK, frame

        answer = frame(_ECHO_ACK)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            buffer = b""
            while chunk := await reader.read(65536):
                buffer += chunk
                while END_BLOCK in buffer:
                    _, _, buffer = buffer.partition(END_BLOCK)
                    writer.write(answer)
                await writer.drain()
            writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _rate_of_processes(batches: list[list[str]]) -> float:
    """Messages per second of `careline mllp --processes PROCESSES` on this database."""
    from django.db import connection

    from tests.faults.pgcluster import free_port
    from tests.faults.support import careline_env, database_url

    port = free_port()
    env = careline_env(DATABASE_URL=database_url(), PYTHONPATH=str(Path(__file__).parents[1]))
    command = [sys.executable, "-m", "careline", "mllp", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--processes", str(PROCESSES)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for _ in range(PROCESSES):
            if not process.stdout.readline().startswith("Listening for MLLP"):
                raise RuntimeError("careline mllp --processes did not start")
        connection.close()  # the listeners' connections, not this one, do the work
        return _rate("127.0.0.1", port, batches)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _check_applied(expected: int) -> None:
    """Every message AA and applied: its visit stored and its reminders planned."""
    from careline.integrations.models import Hl7Message, Hl7MessageState
    from careline.messaging.models import OutboundMessage
    from careline.scheduling.models import Appointment

    applied = Hl7Message.objects.filter(state=Hl7MessageState.APPLIED, ack_code="AA").count()
    # The bench database holds only this run's visits (stored under the feed's namespace).
    visits = Appointment.objects.count()
    planned = (
        OutboundMessage.objects.filter(appointment__isnull=False)
        .values("appointment_id")
        .distinct()
        .count()
    )
    if not applied == visits == planned == expected:
        raise RuntimeError(
            f"{expected} messages sent: {applied} applied AA, {visits} visits stored, "
            f"{planned} with reminders planned"
        )


def _run_here(messages: int) -> None:
    from bench.common import BENCH_DIR

    # A directory of this run's own for the SQLite test database: not the checkout's
    # (a test run there) nor the bench directory's (other benchmarks' test databases).
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="hl7_mllp-", dir=BENCH_DIR)
    os.environ.setdefault("CARELINE_DATA_DIR", data_dir)
    try:
        _measure(messages)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _measure(messages: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from careline.clinics.models import Organization, Practice
    from careline.integrations.hl7.mllp import start_background_listener
    from careline.integrations.models import Hl7Feed

    if connection.vendor == "postgresql":
        # Not Django's test_<name>, which a test run on the same cluster uses.
        connection.settings_dict["TEST"]["NAME"] = "careline_bench_hl7_mllp"
    echo = _EchoServer()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        org = Organization.objects.create(name="Bench", slug="bench")
        Practice.objects.create(organization=org, name="Bench", code="BENCH")
        Hl7Feed.objects.create(organization=org, name="BENCH", mrn_identifier_type="MR")
        per = messages // CONNECTIONS
        one = [[_siu(n, "A") for n in range(messages)]]
        eight = [[_siu(n, f"B{c}-") for n in range(per)] for c in range(CONNECTIONS)]
        echo_one = _rate("127.0.0.1", echo.port, one)
        echo_eight = _rate("127.0.0.1", echo.port, eight)
        listener = start_background_listener()
        try:
            single = _rate(listener.host, listener.port, one)
            several = _rate(listener.host, listener.port, eight)
        finally:
            listener.close()
        expected = messages + per * CONNECTIONS
        processes = None
        if connection.vendor == "postgresql":
            # `careline mllp --processes 2` on the same database, as production runs it.
            batches = [[_siu(n, f"P{c}-") for n in range(per)] for c in range(CONNECTIONS)]
            processes = _rate_of_processes(batches)
            expected += per * CONNECTIONS
        _check_applied(expected)
    finally:
        echo.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)

    vendor = connection.vendor
    figures = [
        (f"hl7_mllp_1_connection_msgs_per_s[{vendor}]", single, echo_one),
        (f"hl7_mllp_{CONNECTIONS}_connections_msgs_per_s[{vendor}]", several, echo_eight),
    ]
    if processes is not None:
        figures.append(
            (
                f"hl7_mllp_{CONNECTIONS}_connections_{PROCESSES}_processes_msgs_per_s[{vendor}]",
                processes,
                echo_eight,
            )
        )
    for name, value, ceiling in figures:
        print(f"{name} | {value:.1f} | {ceiling:.1f} | {value / ceiling:.4f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="per run (default 2000)")
    parser.add_argument(
        "--database",
        choices=("env", "sqlite", "postgres", "both"),
        default="env",
        help="env (default): DATABASE_URL as set, else SQLite",
    )
    # The bench runner passes the same options to every benchmark; ignore the others'.
    args, _ = parser.parse_known_args(argv)
    if args.database == "env":
        _run_here(args.messages)
        return 0
    from bench.common import postgres_server_url

    code = 0
    for kind in ("sqlite", "postgres") if args.database == "both" else (args.database,):
        env = {**os.environ}
        if kind == "postgres":
            env["DATABASE_URL"] = postgres_server_url()
        else:
            env.pop("DATABASE_URL", None)
        command = [sys.executable, __file__, "--messages", str(args.messages)]
        code = code or subprocess.run(command, env=env).returncode
    return code


if __name__ == "__main__":
    sys.exit(main())
