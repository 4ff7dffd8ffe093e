"""Inbound Twilio webhook under `careline serve`: latency at a fixed offered load, and the ceiling.

For each database it makes a fresh migrated database (a SQLite file, or a database on the
local PostgreSQL) with N patients who each have an upcoming visit, starts `careline serve`
(the production server: gunicorn as `serve` configures it, plus the message worker) on a
loopback port, and sends texts to /webhooks/twilio/sms signed with twilio's
RequestValidator, as Twilio would: half of them "C" (a confirmation), the rest questions
and thanks for the inbox.

* Fixed offered load: RATE requests/s for SECONDS s (500/s for 5 s by default), each
  sent at its scheduled moment from a thread pool, whatever the answers before it did
  (open loop); latency is counted from the scheduled moment, so a server falling behind
  shows in p99 instead of slowing the client down. The same load on /healthz (one
  `SELECT 1`) is the bare-Django baseline. The signed requests are made before the clock
  starts, so the client's own work is not in the figures.
* Ceiling: CLIENTS clients sending back to back for CEILING_SECONDS s, webhook vs /healthz.

Every request is bounded (timeout) and so is the run. Afterwards every MessageSid answered
200 must be stored exactly once, and the worker must have read every stored text (the
seconds it took after the last request are printed: the webhook stores, the worker
interprets). A 503 (refused under overload, Twilio retries it) counts as failed.

What the profiles showed (py-spy on `careline serve` and its worker; docs/performance.md
has them in full): first, 88% of a web process's time was interpreting the reply inside
the request, so the webhook now only stores the text. Then, with the store alone: sync
gunicorn workers idle through every wait (a database round trip, SQLite's lock, and
gunicorn waiting for the client to close after the answer), the page middleware costing
as much CPU as the INSERT, and the worker reading the stored texts at full speed (about
18 ms each, on SQLite holding the one write lock) in the middle of the burst. Now serve
runs gthread workers, Twilio's webhooks skip the middleware, and while texts are arriving
the worker reads them with a fifth of its time, catching up once the burst stops.

    .venv/bin/python -m bench.webhook [--rows 10000] [--database sqlite] [--rate 500]
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

# Offered load (issue 21): a burst of replies after a broadcast to a whole group.
RATE = 500.0
SECONDS = 5
CLIENTS = 8
# Requests in flight at once in the open loop: Twilio does not wait for earlier answers,
# so the client must not become the queue (a second behind at 500/s is 500 in flight).
CONCURRENT = 512
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
    refused: int = 0
    answered_sids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, done: float, ok: bool, sid: str = "", status: int = 0) -> None:
        with self.lock:
            self.first = min(self.first, started)
            self.last = max(self.last, done)
            if ok:
                self.ok += 1
                self.latencies_ms.append((done - started) * 1000)
                if sid:
                    self.answered_sids.append(sid)
            else:
                self.failed += 1
                self.refused += status == 503

    @property
    def per_second(self) -> float:
        return self.ok / (self.last - self.first) if self.ok else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


class Server:
    """`careline serve` on a free loopback port, as a child process of this benchmark."""

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
            "CARELINE_SMS_GATEWAY": "simulator",
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "LOG_LEVEL": "WARNING",
        }
        self.log = open(BENCH_DIR / "webhook-serve.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "careline", "serve", "--bind", f"127.0.0.1:{self.port}"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"careline serve exited ({self.process.returncode}); see {self.log.name}"
                )
            try:
                if request(self.port, "GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("careline serve did not answer /healthz within 60 s")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def request(
    port: int, method: str, path: str, body: str = "", headers: dict | None = None
) -> tuple[int, str]:
    """(status, Retry-After) of one request on a new connection, as Twilio makes them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After", "")
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

    def next(self) -> tuple[str, str, dict[str, str]]:
        """(MessageSid, form body, headers) of the next text."""
        with self.lock:
            n = self.count
            self.count += 1
        sid = f"SM{n:032x}"
        params = {
            "MessageSid": sid,
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
        return sid, urlencode(params), headers


Signed = tuple[str, str, dict[str, str]]


def _one(port: int, texts: Texts | Signed | None, scheduled: float, results: Results) -> None:
    if time.perf_counter() - scheduled > TIMEOUT:
        # Still queued in the client after the timeout: given up on, as a real client would.
        results.add(scheduled, time.perf_counter(), False)
        return
    sid, status = "", 0
    try:
        if texts is None:
            status, _ = request(port, "GET", "/healthz")
        else:
            sid, body, headers = texts.next() if isinstance(texts, Texts) else texts
            status, _ = request(port, "POST", WEBHOOK, body, headers)
        ok = status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    results.add(scheduled, time.perf_counter(), ok, sid, status)


def offered_load(port: int, texts: Texts | None, rate: float, seconds: float) -> Results:
    """Open loop: request i goes out at start + i / rate, answered or not. The signed
    requests are made first, so signing is not part of the schedule."""
    results = Results()
    total = int(rate * seconds)
    signed = [texts.next() for _ in range(total)] if texts is not None else [None] * total
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        start = time.perf_counter() + 0.1
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(_one, port, signed[i], scheduled, results)
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


def _stored_once(sids: list[str]) -> int:
    """How many of `sids` are not stored exactly once (0 when every one is)."""
    from django.db.models import Count

    from careline.conversations.models import InboundMessage

    counts: dict[str, int] = {}
    for start in range(0, len(sids), 500):
        chunk = sids[start : start + 500]
        counts.update(
            InboundMessage.objects.filter(provider_message_id__in=chunk)
            .values_list("provider_message_id")
            .annotate(n=Count("id"))
        )
    return sum(1 for sid in sids if counts.get(sid) != 1)


def _all_interpreted(limit: float) -> float:
    """Seconds until the worker has read every stored text (inf past `limit`)."""
    from careline.conversations.models import InboundMessage

    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if not InboundMessage.objects.filter(interpreted_at__isnull=True).exists():
            return time.perf_counter() - started
        time.sleep(0.5)
    return float("inf")


def measure(kind: str, rows: int, rate: float, seconds: float) -> list[str]:
    url = fresh_database(kind, "careline_bench_webhook")
    use_database(url)
    from django.db import connections

    phones, to_number = _clinic(rows)
    connections.close_all()
    server = Server(url)
    try:
        texts = Texts(server.base, phones, to_number)
        warm = Results()
        for _ in range(16):  # every web process past its first, slow request
            _one(server.port, texts, time.perf_counter(), warm)
            _one(server.port, None, time.perf_counter(), Results())
        webhook = offered_load(server.port, texts, rate, seconds)
        health = offered_load(server.port, None, rate, seconds)
        webhook_max = ceiling(server.port, texts)
        health_max = ceiling(server.port, None)
        drained = _all_interpreted(limit=300)
    finally:
        server.close()
    answered = warm.answered_sids + webhook.answered_sids + webhook_max.answered_sids
    not_once = _stored_once(answered)
    if not_once:
        raise RuntimeError(f"{not_once:,} of {len(answered):,} texts answered 200 not stored once")
    print(
        f"# {kind}: careline serve, {rate:g} req/s offered for {seconds:g} s: "
        f"{webhook.ok:,} texts answered, {webhook.failed} failed ({webhook.refused} refused "
        f"with 503); ceiling run {webhook_max.ok:,} answered, {webhook_max.refused} refused; "
        f"every answered MessageSid stored once; the worker read them all "
        f"{drained:.1f} s after the last request",
        flush=True,
    )
    tag = f"[{kind},{rows}]"
    return [
        figure(f"webhook_p50_ms{tag}", webhook.percentile(0.50), health.percentile(0.50), ".1f"),
        figure(f"webhook_p99_ms{tag}", webhook.percentile(0.99), health.percentile(0.99), ".1f"),
        figure(
            f"webhook_at_offered_load_req_per_s{tag}", webhook.per_second, health.per_second, ".1f"
        ),
        figure(f"webhook_failed_requests{tag}", webhook.failed, None),
        figure(
            f"webhook_ceiling_req_per_s{tag}", webhook_max.per_second, health_max.per_second, ".1f"
        ),
        figure(f"webhook_worker_caught_up_s{tag}", drained, None, ".1f"),
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
