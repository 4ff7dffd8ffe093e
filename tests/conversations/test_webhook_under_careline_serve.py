"""The inbound webhook under `careline serve`, from outside (issue 21): a server killed
mid-burst loses no text it acknowledged, and a server that has fallen behind refuses what
waited too long with 503 + Retry-After instead of letting the queue grow.

Each test migrates a database of its own (a SQLite file, or a scratch database on the
PostgreSQL server the suite runs on) and runs `careline serve` as a child process."""

from __future__ import annotations

import http.client
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import dj_database_url
import pytest
from twilio.request_validator import RequestValidator

from tests.web.test_serve_stops_gunicorn import ROOT, _free_port, _wait_for_port

TOKEN = "serve-webhook-token"
PATH = "/webhooks/twilio/sms"


@pytest.fixture
def database(tmp_path) -> Iterator[str]:
    """A migrated database for the child processes: PostgreSQL when the suite runs on it."""
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith("postgres"):
        url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
        _careline(url, tmp_path, "migrate", "--verbosity", "0")
        yield url
        return
    import psycopg

    name = "careline_webhook_" + re.sub(r"[^a-z0-9]", "", tmp_path.name.lower())[-20:]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        _careline(url, tmp_path, "migrate", "--verbosity", "0")
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CARELINE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": url,
        "SECRET_KEY": "test-only-serve-webhook-key-" + "x" * 40,
        "CARELINE_SMS_GATEWAY": "simulator",
        "TWILIO_AUTH_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _careline(url: str, tmp_path: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "careline", *args],
        cwd=tmp_path,
        env=_env(url, tmp_path),
        check=True,
        timeout=180,
    )


class Serve:
    """`careline serve --no-worker` in its own process group (so all of it can be killed)."""

    def __init__(self, url: str, tmp_path: Path, workers: int, **extra: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "careline", "serve", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", str(workers), "--no-worker"],
            cwd=tmp_path,
            env=_env(url, tmp_path, CARELINE_BASE_URL=self.base, **extra),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        _wait_for_port(self.port, self.process)
        # Listening is not answering: each web process loads Django after gunicorn binds.
        # A test that times answers must not time that start-up.
        self.warm_up()

    def warm_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
            finally:
                conn.close()
        pytest.fail("careline serve never answered /healthz")

    def kill(self) -> None:
        """SIGKILL to serve, gunicorn's master and its workers at once: a crash."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.log.close()


def _post(serve: Serve, sid: str, body: str = "C") -> tuple[int, str]:
    """Twilio's request for one text; (status, Retry-After), status 0 when no answer came."""
    params = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15125550123",
        "To": "+15125550100",
        "Body": body,
        "NumMedia": "0",
    }
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(serve.base + PATH, params),
    }
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=15)
    try:
        conn.request("POST", PATH, urlencode(params), headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After", "")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


def _deliver(serve: Serve, sid: str) -> int:
    """As Twilio does: send again after a 503 or no answer (a few times); the last status."""
    for _ in range(20):
        status, _ = _post(serve, sid)
        if status == 200:
            break
        time.sleep(0.2)
    return status


def _stored(url: str) -> dict[str, int]:
    """provider_message_id -> rows stored with it, read straight from the database."""
    sql = (
        "SELECT provider_message_id, COUNT(*) FROM conversations_inboundmessage "
        "GROUP BY provider_message_id"
    )
    config = dj_database_url.parse(url)
    if config["ENGINE"].endswith("sqlite3"):
        with sqlite3.connect(config["NAME"]) as conn:
            return dict(conn.execute(sql).fetchall())
    import psycopg

    with psycopg.connect(url) as conn:
        return dict(conn.execute(sql).fetchall())


def test_no_acknowledged_text_is_lost_when_the_server_is_killed_mid_burst(database, tmp_path):
    serve = Serve(database, tmp_path, workers=2)
    answered: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    sids = iter(f"SMkill{n:026d}" for n in range(100_000))

    def sender() -> None:
        while not stop.is_set():
            with lock:
                sid = next(sids)
            status, _ = _post(serve, sid)
            with lock:
                answered[sid] = status

    senders = [threading.Thread(target=sender) for _ in range(6)]
    for thread in senders:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(1 for s in answered.values() if s == 200) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    serve.kill()  # mid-burst: requests are in flight
    stop.set()
    for thread in senders:
        thread.join(30)

    acknowledged = {sid for sid, status in answered.items() if status == 200}
    unanswered = {sid for sid, status in answered.items() if status != 200}
    assert len(acknowledged) >= 60
    stored = _stored(database)
    # Every text answered 200 is in the database, once.
    assert all(stored.get(sid) == 1 for sid in acknowledged)

    # Twilio retries everything it got no 200 for (and some it did) on the restarted server.
    serve = Serve(database, tmp_path, workers=2)
    try:
        retried = sorted(unanswered) + sorted(acknowledged)[:10]
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda sid: _deliver(serve, sid), retried))
    finally:
        serve.stop()
    assert statuses == [200] * len(retried)
    assert _stored(database) == {sid: 1 for sid in answered}


def test_a_server_behind_refuses_what_waited_too_long_and_takes_the_retries(database, tmp_path):
    if not database.startswith("sqlite"):
        pytest.skip("holds SQLite's write lock from outside; the in-process test covers PG")
    path = dj_database_url.parse(database)["NAME"]
    serve = Serve(database, tmp_path, workers=1, CARELINE_WEBHOOK_MAX_WAIT_SECONDS="0.5")
    sids = [f"SMbehind{n:024d}" for n in range(10)]
    try:
        # Another writer holds the database: the one web process can store nothing.
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with ThreadPoolExecutor(len(sids)) as pool:
            answers = list(pool.map(lambda sid: _post(serve, sid), sids))
        took = time.monotonic() - started
        holder.execute("ROLLBACK")
        holder.close()

        assert answers == [(503, "1")] * len(sids)
        # One waits out its half second; the rest waited that long in the queue behind it
        # and are refused at once (one at a time they would take 10 x 0.5 s).
        assert took < 3.5
        assert _stored(database) == {}

        with ThreadPoolExecutor(len(sids)) as pool:
            retries = list(pool.map(lambda sid: _deliver(serve, sid), sids))
    finally:
        serve.stop()
    assert retries == [200] * len(sids)
    assert _stored(database) == dict.fromkeys(sids, 1)


def _post_raw(serve: Serve, sid: str) -> http.client.HTTPResponse:
    params = {"MessageSid": sid, "From": "+15125550123", "To": "+15125550100", "Body": "C"}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(serve.base + PATH, params),
    }
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=15)
    conn.request("POST", PATH, urlencode(params), headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_one_text_delivered_many_times_at_once_by_many_connections_is_stored_once(
    database, tmp_path
):
    # Two web processes, each answering several requests at once: the copies race in
    # different processes and threads, each on its own database connection.
    serve = Serve(database, tmp_path, workers=2)
    sids = [f"SMtwice{n:025d}" for n in range(5)]
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda sid: _post(serve, sid)[0], sids * 8))
    finally:
        serve.stop()
    assert statuses == [200] * len(sids) * 8
    assert _stored(database) == dict.fromkeys(sids, 1)


def test_twilio_webhooks_skip_the_page_middleware_under_serve(database, tmp_path):
    serve = Serve(database, tmp_path, workers=1)
    try:
        webhook = _post_raw(serve, "SMlean00000000000000000000000001")
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=15)
        conn.request("GET", "/healthz")
        page = conn.getresponse()
        page.read()
        conn.close()
    finally:
        serve.stop()
    assert webhook.status == 200
    assert page.status == 200
    # Pages get the full stack (CSP, language negotiation); Twilio's webhook does not.
    assert page.getheader("Content-Security-Policy")
    assert webhook.getheader("Content-Security-Policy") is None
    assert "Accept-Language" in (page.getheader("Vary") or "")
    assert webhook.getheader("Vary") is None
    assert _stored(database) == {"SMlean00000000000000000000000001": 1}
