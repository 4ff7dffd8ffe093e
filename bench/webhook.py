"""Inbound Twilio webhook under gunicorn: latency at a fixed offered load, and the ceiling.

For each database it makes a fresh migrated database (a SQLite file, or a database on the
local PostgreSQL) with N patients who each have an upcoming visit, starts
`gunicorn careline.wsgi:application` with several workers on a loopback port, and sends
texts to /webhooks/twilio/sms signed with twilio's RequestValidator, as Twilio would: half
of them "C" (a confirmation), the rest questions and thanks for the inbox.

* Fixed offered load: RATE requests/s for SECONDS s (10/s for 20 s by default), each
  sent at its scheduled moment from a thread pool, whatever the answers before it did
  (open loop); latency is counted
  from the scheduled moment, so a server falling behind shows in p99 instead of slowing
  the client down. The same load on /healthz (one `SELECT 1`) is the bare-Django baseline.
* Ceiling: CLIENTS clients sending back to back for CEILING_SECONDS s, webhook vs /healthz.

Every request is bounded (timeout) and so is the run; afterwards the stored inbound
messages must equal the webhook requests answered 200 (nothing lost).

    .venv/bin/python -m bench.webhook [--rows 10000] [--database sqlite] [--rate 50]
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from bench.common import BENCH_DIR, figure, fresh_database
from bench.reports import analyze, each_database, use_database

WORKERS = 4
# Offered load: about three times the replies to a 10,000-patient broadcast in its first
# ten minutes (a fifth of them answering), the busiest minutes a group of this size sees.
RATE = 10.0
SECONDS = 20
CLIENTS = 8
CEILING_SECONDS = 5
TIMEOUT = 10.0
AUTH_TOKEN = "bench-" + secrets.token_hex(16)
WEBHOOK = "/webhooks/twilio/sms"
BODIES = ("C", "C", "Is there parking near the office?", "Thanks!")


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    first: float = float("inf")
    last: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, done: float, ok: bool) -> None:
        with self.lock:
            self.first = min(self.first, started)
            self.last = max(self.last, done)
            if ok:
                self.ok += 1
                self.latencies_ms.append((done - started) * 1000)
            else:
                self.failed += 1

    @property
    def per_second(self) -> float:
        return self.ok / (self.last - self.first) if self.ok else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


class Server:
    """gunicorn on a free loopback port, as a child process of this benchmark."""

    def __init__(self, database_url: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CARELINE_DATA_DIR": str(BENCH_DIR),
            "CARELINE_BASE_URL": self.base,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "CONN_MAX_AGE": "60",  # as docs/production.md advises
            "LOG_LEVEL": "WARNING",
        }
        self.log = open(BENCH_DIR / "webhook-gunicorn.log", "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "careline.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(WORKERS),
                "--log-level",
                "warning",
            ],  # fmt: skip
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited ({self.process.returncode}); see {self.log.name}"
                )
            try:
                if request(self.port, "GET", "/healthz") == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("gunicorn did not answer /healthz within 60 s")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def request(port: int, method: str, path: str, body: str = "", headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Texts:
    """Signed inbound-text requests from the bench patients, each with a new MessageSid."""

    def __init__(self, base: str, phones: list[str], to_number: str) -> None:
        from twilio.request_validator import RequestValidator

        self.url = base + WEBHOOK
        self.validator = RequestValidator(AUTH_TOKEN)
        self.phones, self.to_number = phones, to_number
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> tuple[str, dict[str, str]]:
        with self.lock:
            n = self.count
            self.count += 1
        params = {
            "MessageSid": f"SM{n:032x}",
            "AccountSid": "AC" + "0" * 32,
            "From": self.phones[n % len(self.phones)],
            "To": self.to_number,
            "Body": BODIES[n % len(BODIES)],
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.validator.compute_signature(self.url, params),
        }
        return urlencode(params), headers


def _one(port: int, texts: Texts | None, scheduled: float, results: Results) -> None:
    if time.perf_counter() - scheduled > TIMEOUT:
        # Still queued in the client after the timeout: given up on, as a real client would.
        results.add(scheduled, time.perf_counter(), False)
        return
    try:
        if texts is None:
            status = request(port, "GET", "/healthz")
        else:
            body, headers = texts.next()
            status = request(port, "POST", WEBHOOK, body, headers)
        ok = status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    results.add(scheduled, time.perf_counter(), ok)


def offered_load(port: int, texts: Texts | None, rate: float, seconds: float) -> Results:
    """Open loop: request i goes out at start + i / rate, answered or not."""
    results = Results()
    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter() + 0.1
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(_one, port, texts, scheduled, results)
    return results


def ceiling(port: int, texts: Texts | None) -> Results:
    """Closed loop: CLIENTS clients, each sending its next request when the last is answered."""
    results = Results()
    stop = time.perf_counter() + CEILING_SECONDS

    def client() -> None:
        while time.perf_counter() < stop:
            _one(port, texts, time.perf_counter(), results)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _clinic(rows: int) -> tuple[list[str], str]:
    """N patients with an upcoming visit each; (their numbers, the number they text)."""
    from bench.reminders_common import make_clinic
    from careline.patients.models import Patient

    now = datetime.now(UTC)
    org, _ = make_clinic(rows, start=now + timedelta(days=1), spread=timedelta(days=14))
    phones = list(Patient.objects.filter(organization=org).values_list("mobile_phone", flat=True))
    analyze()
    return phones, org.default_sender_number


def measure(kind: str, rows: int, rate: float, seconds: float) -> list[str]:
    url = fresh_database(kind, "careline_bench_webhook")
    use_database(url)
    from django.db import connections

    from careline.conversations.models import InboundMessage

    phones, to_number = _clinic(rows)
    connections.close_all()
    server = Server(url)
    try:
        texts = Texts(server.base, phones, to_number)
        warm = Results()
        for _ in range(4 * WORKERS):  # every worker past its first, slow request
            _one(server.port, texts, time.perf_counter(), warm)
            _one(server.port, None, time.perf_counter(), Results())
        webhook = offered_load(server.port, texts, rate, seconds)
        health = offered_load(server.port, None, rate, seconds)
        webhook_max = ceiling(server.port, texts)
        health_max = ceiling(server.port, None)
    finally:
        server.close()
    answered = warm.ok + webhook.ok + webhook_max.ok
    stored = InboundMessage.objects.count()
    if stored < answered:
        raise RuntimeError(f"{answered:,} texts answered 200 but only {stored:,} stored")
    print(
        f"# {kind}: {WORKERS} gunicorn workers, {rate:g} req/s offered for {seconds:g} s, "
        f"{webhook.ok:,} texts answered, {webhook.failed} failed",
        flush=True,
    )
    tag = f"[{kind},{rows}]"
    return [
        figure(f"webhook_p50_ms{tag}", webhook.percentile(0.50), health.percentile(0.50), ".1f"),
        figure(f"webhook_p99_ms{tag}", webhook.percentile(0.99), health.percentile(0.99), ".1f"),
        figure(
            f"webhook_at_offered_load_req_per_s{tag}", webhook.per_second, health.per_second, ".1f"
        ),
        figure(f"webhook_failed_requests{tag}", webhook.failed + webhook_max.failed, None),
        figure(
            f"webhook_ceiling_req_per_s{tag}", webhook_max.per_second, health_max.per_second, ".1f"
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__)
    parser.add_argument("--rows", "--patients", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rate", type=float, default=RATE, help="offered requests per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of offered load")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--rows, --rate and --seconds must be positive")
    if args.database == "both":
        return each_database("bench.webhook", sys.argv[1:] if argv is None else argv)
    for line in measure(args.database, args.rows, args.rate, args.seconds):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
