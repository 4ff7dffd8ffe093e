"""PostgreSQL restarts (`pg_ctl restart -m fast`) under a running web server and worker.

The test brings its own cluster, so it runs once per `make test`: in the PostgreSQL run.
Texts come in through the signed Twilio webhook before, during and after the restart
(each retried until accepted, as Twilio's retries would); each asks for HELP, so each
puts one answer in the outbox, which the worker sends to a fake Twilio in this process.
Afterwards /healthz answers 200 again and every number got exactly one answer.

The worker runs under a supervisor that restarts it when it exits, as the production
guide runs it (systemd, Restart=always); whether it survives on its own is the last test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.faults.pgcluster import ThrowawayCluster, free_port, server_binaries
from tests.faults.support import careline_env, patient_number
from tests.messaging.fake_twilio import running_fake_twilio

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="brings its own PostgreSQL cluster; runs once, in the PostgreSQL run",
)

ACCOUNT_SID = "AC" + "feed" * 8
TOKEN = "restart-test-token"
ORG_NUMBER = "+15125550100"
# One interpreter for the schema and the organization texts arrive for.
SET_UP = f"""
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from careline.clinics.models import Organization
Organization.objects.create(
    name="Restart Health", slug="restart-health", default_sender_number="{ORG_NUMBER}"
)
"""
BEFORE, DURING = 6, 14
TOTAL = BEFORE + DURING


@pytest.fixture(scope="module")
def cluster():
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries are not installed (see scripts/postgres.sh)")
    cluster = ThrowawayCluster(binaries)
    try:
        cluster.create()
        env = careline_env(DATABASE_URL=cluster.url, DJANGO_SETTINGS_MODULE="careline.settings")
        subprocess.run([sys.executable, "-c", SET_UP], env=env, check=True, timeout=300)
        yield cluster
    finally:
        cluster.destroy()


class Supervised:
    """Keeps a command running, restarting it when it exits, as systemd's Restart=always
    does for `careline worker` in the production guide."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log.open("ab")
        self.restarts = 0
        self._stopping = threading.Event()
        self.process = self._start()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=self.log)

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            if self.process.poll() is not None:
                self.restarts += 1
                self.process = self._start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        stop(self.process)
        self.log.close()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_for(condition, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Texter:
    """A patient texting HELP through the signed webhook, retrying until it is accepted."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/webhooks/twilio/sms"
        self.refused = Counter()

    def text(self, n: int, within: float = 60) -> None:
        params = {
            "MessageSid": f"SM{n:032x}",
            "AccountSid": ACCOUNT_SID,
            "From": patient_number(n),
            "To": ORG_NUMBER,
            "Body": "HELP",
        }
        signature = RequestValidator(TOKEN).compute_signature(self.url, params)
        deadline = time.monotonic() + within
        while True:
            try:
                response = requests.post(
                    self.url, data=params, headers={"X-Twilio-Signature": signature}, timeout=5
                )
                if response.status_code == 200:
                    return
                self.refused[response.status_code] += 1
            except requests.RequestException as exc:
                self.refused[type(exc).__name__] += 1
            assert time.monotonic() < deadline, f"text {n} never accepted: {self.refused}"
            time.sleep(0.1)


def _outbox(cluster: ThrowawayCluster) -> tuple[Counter, int]:
    with psycopg.connect(cluster.url) as db:
        states = Counter(
            dict(
                db.execute(
                    "SELECT state, count(*) FROM messaging_outboundmessage GROUP BY state"
                ).fetchall()
            )
        )
        inbound = db.execute("SELECT count(*) FROM conversations_inboundmessage").fetchone()[0]
    return states, inbound


def test_web_server_and_worker_recover_from_a_postgresql_restart(cluster):
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    with running_fake_twilio(ACCOUNT_SID, TOKEN) as twilio:
        env = careline_env(
            DATABASE_URL=cluster.url,
            # Persistent connections, as docs/production.md recommends: the restart
            # leaves every web process holding a dead one.
            CONN_MAX_AGE="60",
            CARELINE_BASE_URL=base,
            CARELINE_SMS_GATEWAY="twilio",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_API_BASE_URL=twilio.base_url,
            TWILIO_TIMEOUT_SECONDS="5",
            CARELINE_WORKER_LEASE_SECONDS="2",
            LOG_LEVEL="INFO",
        )
        web_log, worker_log = cluster.root / "web.log", cluster.root / "worker.log"
        with web_log.open("ab") as log:
            web = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn", "careline.wsgi:application",
                    "--bind", f"127.0.0.1:{web_port}", "--workers", "2",
                ],
                env=env, stdout=log, stderr=log,
            )  # fmt: skip
        worker = Supervised(
            [sys.executable, "-m", "careline", "worker", "--sleep", "0.2", "--batch-size", "5"],
            env,
            worker_log,
        )
        try:
            assert _wait_for(lambda: _healthy(base), 30), _tail(web_log)
            texter = Texter(base)
            for n in range(BEFORE):
                texter.text(n)
            assert _wait_for(lambda: len(twilio.messages) == BEFORE, 30), _tail(worker_log)

            problems: list[BaseException] = []

            def keep_texting() -> None:
                try:
                    for n in range(BEFORE, BEFORE + DURING):
                        texter.text(n)
                        time.sleep(0.05)
                except BaseException as exc:  # noqa: BLE001 — reported by the test
                    problems.append(exc)

            during = threading.Thread(target=keep_texting)
            during.start()
            time.sleep(0.2)
            cluster.restart()
            during.join(timeout=90)
            assert not during.is_alive() and not problems, problems

            assert _wait_for(lambda: _healthy(base), 15), _tail(web_log)
            assert _wait_for(lambda: _outbox(cluster)[0] == Counter(sent=TOTAL), 60, step=0.3), (
                _outbox(cluster),
                _tail(worker_log),
            )
            assert web.poll() is None, _tail(web_log)
        finally:
            worker.stop()
            stop(web)

        with twilio.lock:
            per_number = Counter(m["to"] for m in twilio.messages.values())
    assert per_number == Counter({patient_number(n): 1 for n in range(TOTAL)})
    assert _outbox(cluster)[1] == TOTAL


def test_the_worker_keeps_running_through_a_postgresql_restart(cluster):
    log_path = cluster.root / "lone-worker.log"
    env = careline_env(DATABASE_URL=cluster.url, CARELINE_SMS_GATEWAY="simulator", LOG_LEVEL="INFO")
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "careline", "worker", "--sleep", "0.2"],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        started = _wait_for(lambda: "Worker started" in log_path.read_text(), 30)
        time.sleep(0.5)  # a pass or two: connected, and idling between passes
        if not started or worker.poll() is not None:
            pytest.fail(f"the worker did not start:\n{_tail(log_path)}")
        cluster.restart()
        survived = not _wait_for(lambda: worker.poll() is not None, 3)
    finally:
        stop(worker)
    assert survived, _tail(log_path)
