"""EMAIL_URL reaches a real mail server: `careline worker` (a subprocess, configured only
by its environment) delivers a due reminder to a local SMTP server (aiosmtpd), in the
clear, with STARTTLS and over implicit TLS, logging in with the URL's user and password.
The server's certificate comes from a test CA the worker trusts through SSL_CERT_FILE."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from datetime import timedelta

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from django.utils import timezone

from careline.messaging.models import MessageState, OutboundMessage
from careline.scheduling.appointments import book_appointment
from tests.emails import parse
from tests.faults.support import careline_env, database_url

USER, PASSWORD = "careline", "s3cret pass/word"


class MailServer:
    """What the server received: each message's bytes, its envelope, TLS and login."""

    def __init__(self) -> None:
        self.received: list[dict] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(
            {
                "raw": envelope.original_content or envelope.content,
                "to": envelope.rcpt_tos,
                "from": envelope.mail_from,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "login": session.auth_data,
            }
        )
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (USER, PASSWORD)
    return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ca(tmp_path):
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


def _server_context(authority) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def due_email(build):
    """A visit booked for tomorrow by a patient with only an email address: asked to
    confirm at once (inside the last reminder's window)."""
    org = build.organization()
    practice = build.practice(org, time_zone="America/Chicago")
    patient = build.patient(
        org, home_practice=practice, mobile_phone="", email="rosa@example.org", given_name="Rosa"
    )
    book_appointment(
        patient=patient,
        provider=build.provider(practice, hours=None),
        practice=practice,
        appointment_type=build.appointment_type(org),
        start=timezone.now() + timedelta(hours=20),
        check_working_time=False,
    )
    return OutboundMessage.objects.get(channel="email", state=MessageState.SCHEDULED)


def _worker(email_url: str, ca_file: str, **email_env: str) -> subprocess.CompletedProcess:
    env = careline_env(
        DATABASE_URL=database_url(),
        EMAIL_URL=email_url,
        SSL_CERT_FILE=ca_file,
        **email_env,
        CARELINE_EMAIL_FROM="reminders@lakeside.example.org",
        CARELINE_SMS_GATEWAY="simulator",
        CARELINE_BASE_URL="https://careline.example.org",
    )
    return subprocess.run(
        [sys.executable, "-m", "careline", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "mode, query",
    [
        ("plain", ""),
        ("starttls", "?tls=True"),
        ("implicit_tls", "?ssl=True"),
        # Without EMAIL_URL: Django's own EMAIL_* variables.
        ("starttls", None),
        ("implicit_tls", None),
    ],
)
def test_the_worker_sends_through_the_server_email_url_names(due_email, ca, mode, query):
    authority, ca_file = ca
    inbox = MailServer()
    port = _free_port()
    # (aiosmtpd offers AUTH over implicit TLS only when it does not insist on STARTTLS.)
    options = {"authenticator": _authenticate, "auth_require_tls": mode == "starttls"}
    if mode == "starttls":
        options.update(tls_context=_server_context(authority), require_starttls=True)
    if mode == "implicit_tls":
        options.update(ssl_context=_server_context(authority))
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        if query is None:
            result = _worker(
                "",
                ca_file,
                EMAIL_HOST="127.0.0.1",
                EMAIL_PORT=str(port),
                EMAIL_HOST_USER=USER,
                EMAIL_HOST_PASSWORD=PASSWORD,
                EMAIL_USE_TLS="1" if mode == "starttls" else "0",
                EMAIL_USE_SSL="1" if mode == "implicit_tls" else "0",
            )
        else:
            quoted = PASSWORD.replace(" ", "%20").replace("/", "%2F")
            result = _worker(f"smtp://{USER}:{quoted}@127.0.0.1:{port}/{query}", ca_file)
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    assert len(inbox.received) == 1, result.stderr
    (received,) = inbox.received
    assert received["to"] == ["rosa@example.org"]
    assert received["from"] == "reminders@lakeside.example.org"
    assert received["login"] == USER
    assert received["tls"] is (mode != "plain")
    email = parse(received["raw"])
    assert email.text.startswith("Hello Rosa,")
    assert email.header("List-Unsubscribe").startswith("<https://careline.example.org/a/")
    due_email.refresh_from_db()
    assert due_email.state == MessageState.SENT


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_server_is_retried_later_not_lost(due_email, ca):
    result = _worker(f"smtp://127.0.0.1:{_free_port()}", ca[1])
    assert result.returncode == 0, result.stderr
    due_email.refresh_from_db()
    assert due_email.state == MessageState.SCHEDULED
    assert due_email.attempts == 1 and due_email.next_attempt_at is not None


def test_an_email_url_careline_cannot_use_stops_it_at_start_naming_the_variable(ca):
    result = _worker("smtps+oops://user:hunter2secret@mail.example.org", ca[1])
    assert result.returncode != 0
    assert "EMAIL_URL" in result.stderr and "hunter2secret" not in result.stderr


@pytest.mark.parametrize(
    "environment, variable",
    [
        ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "EMAIL_USE_TLS and EMAIL_USE_SSL"),
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT"),
        ({"EMAIL_TIMEOUT": "soon"}, "EMAIL_TIMEOUT"),
        ({"EMAIL_URL": "smtp://mail.example.org:submission"}, "EMAIL_URL"),
    ],
)
def test_email_settings_careline_cannot_use_stop_it_naming_the_variable(environment, variable):
    result = subprocess.run(
        [sys.executable, "-m", "careline", "check"],
        env=careline_env(**{"EMAIL_URL": "", **environment}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable}" in result.stderr, result.stderr
