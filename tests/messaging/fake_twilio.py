"""A small local stand-in for Twilio's Messages REST API, good enough for the real client.

It speaks the 2010-04-01 Messages resource the way the `twilio` package expects it: form
posts with Basic auth, JSON bodies shaped like Twilio's (snake_case fields, RFC 2822 dates,
page envelopes with `next_page_uri`), and Twilio's error envelope
{code, message, more_info, status}. Tests steer it through `FakeTwilio` attributes:
numbers that are opted out or invalid, errors queued for the next requests, a slow mode.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

API_VERSION = "2010-04-01"


@dataclass
class FakeError:
    status: int
    code: int
    message: str


OPTED_OUT = FakeError(400, 21610, "Attempt to send to unsubscribed recipient")
INVALID_NUMBER = FakeError(400, 21211, "Invalid 'To' Phone Number")
NOT_MOBILE = FakeError(400, 21614, "'To' number is not a valid mobile number")
SERVER_ERROR = FakeError(500, 20500, "Internal Server Error")
TOO_MANY_REQUESTS = FakeError(429, 20429, "Too Many Requests")


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    base_url: str = ""
    messages: dict[str, dict] = field(default_factory=dict)
    # Calls placed (Calls.json), by sid, each with the parameters it was created with
    # under "_params" (Url, StatusCallback, StatusCallbackEvent as a list, ...).
    calls: dict[str, dict] = field(default_factory=dict)
    # Numbers that always fail like Twilio does for them: texts, and calls.
    number_errors: dict[str, FakeError] = field(default_factory=dict)
    call_errors: dict[str, FakeError] = field(default_factory=dict)
    # Errors returned, in order, by the next requests (whatever they are).
    next_errors: list[FakeError] = field(default_factory=list)
    # Seconds each request waits before answering (timeouts).
    delay: float = 0.0
    # When set, created messages stay queued: no date_sent, as on a backed-up queue.
    hold_in_queue: bool = False
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add_message(self, *, to: str, from_: str, body: str, sent_at: datetime, **extra) -> dict:
        """Put a message in the account's history as if it had been sent earlier."""
        message = self._message(to=to, from_=from_, body=body, service_sid=None, now=sent_at)
        message.update(status="delivered", date_sent=format_datetime(sent_at, usegmt=True))
        message.update(extra)
        with self.lock:
            self.messages[message["sid"]] = message
        return message

    def _message(
        self, *, to: str, from_: str | None, body: str, service_sid: str | None, now: datetime
    ) -> dict:
        sid = f"SM{next(self._seq):032x}"
        stamp = format_datetime(now, usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Through a Messaging Service without a From, Twilio answers "accepted".
            "status": "queued" if from_ else "accepted",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
            "_created": now,
        }


def _public(message: dict) -> dict:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _date_filter(value: str) -> datetime:
    """Twilio accepts YYYY-MM-DD or an ISO 8601 time for DateSent filters."""
    value = value.strip()
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: tests read `FakeTwilio.requests` instead."""

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, error: FakeError) -> None:
        self._send_json(
            error.status,
            {
                "code": error.code,
                "message": error.message,
                "more_info": f"https://www.twilio.com/docs/errors/{error.code}",
                "status": error.status,
            },
        )

    def _prelude(self, method: str) -> tuple[str, dict[str, list[str]]] | None:
        """Common checks; returns (path, params) or None when an error was already sent."""
        fake = self.server.fake
        parts = urlsplit(self.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            params = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        with fake.lock:
            fake.requests.append((method, parts.path, params))
            error = fake.next_errors.pop(0) if fake.next_errors else None
        if fake.delay:
            time.sleep(fake.delay)
        expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._error(FakeError(401, 20003, "Authenticate"))
            return None
        if parts.path not in (
            f"/{API_VERSION}/Accounts/{fake.account_sid}/Messages.json",
            f"/{API_VERSION}/Accounts/{fake.account_sid}/Calls.json",
        ):
            self._error(FakeError(404, 20404, "The requested resource was not found"))
            return None
        if error:
            self._error(error)
            return None
        return parts.path, params

    def do_POST(self) -> None:
        checked = self._prelude("POST")
        if checked is None:
            return
        fake = self.server.fake
        if checked[0].endswith("/Calls.json"):
            return self._create_call(checked[1])
        params = {k: v[0] for k, v in checked[1].items()}
        to, from_, service = params.get("To"), params.get("From"), params.get("MessagingServiceSid")
        if not to:
            return self._error(FakeError(400, 21604, "A 'To' phone number is required."))
        if not from_ and not service:
            return self._error(FakeError(400, 21603, "A 'From' phone number is required."))
        if not params.get("Body"):
            return self._error(FakeError(400, 21602, "Message body is required."))
        if to in fake.number_errors:
            return self._error(fake.number_errors[to])
        now = datetime.now(UTC)
        message = fake._message(
            to=to, from_=from_, body=params["Body"], service_sid=service, now=now
        )
        message["_status_callback"] = params.get("StatusCallback")
        with fake.lock:
            fake.messages[message["sid"]] = message
        response = _public(message)
        if not fake.hold_in_queue:
            # The history shows it sent from now on; the create answer is still "queued".
            message.update(status="sent", date_sent=message["date_created"])
        self._send_json(201, response)

    def _create_call(self, raw: dict[str, list[str]]) -> None:
        """Calls.create as Twilio answers it: 201 with a queued call; the call's progress
        is the test's to post to the status callback, as Twilio would."""
        fake = self.server.fake
        params = {k: v[0] for k, v in raw.items()}
        to, from_ = params.get("To"), params.get("From")
        if not to:
            return self._error(FakeError(400, 21201, "No 'To' number is specified"))
        if not from_:
            return self._error(FakeError(400, 21213, "No 'From' number is specified"))
        if not params.get("Url") and not params.get("Twiml"):
            return self._error(FakeError(400, 21205, "Url parameter is required."))
        if to in fake.call_errors:
            return self._error(fake.call_errors[to])
        now = datetime.now(UTC)
        stamp = format_datetime(now, usegmt=True)
        with fake.lock:
            sid = f"CA{next(fake._seq):032x}"
        call = {
            "account_sid": fake.account_sid,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": from_,
            "from_formatted": from_,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {},
            "to": to,
            "to_formatted": to,
            "uri": f"/{API_VERSION}/Accounts/{fake.account_sid}/Calls/{sid}.json",
        }
        with fake.lock:
            fake.calls[sid] = {
                **call,
                "_params": {**params, "StatusCallbackEvent": raw.get("StatusCallbackEvent", [])},
                # When the request arrived (monotonic seconds): the bench's calls per second.
                "_at": time.monotonic(),
            }
        self._send_json(201, call)

    def do_GET(self) -> None:
        checked = self._prelude("GET")
        if checked is None:
            return
        path, params = checked
        fake = self.server.fake
        one = {k: v[0] for k, v in params.items()}
        with fake.lock:
            rows = sorted(fake.messages.values(), key=lambda m: m["_created"], reverse=True)
        if "To" in one:
            rows = [m for m in rows if m["to"] == one["To"]]
        if "From" in one:
            rows = [m for m in rows if m["from"] == one["From"]]
        for key, keep in (
            ("DateSent", lambda sent, d: sent.date() == d.date()),
            ("DateSent>", lambda sent, d: sent >= d),
            ("DateSent<", lambda sent, d: sent <= d),
        ):
            if key in one:
                bound = _date_filter(one[key])
                rows = [m for m in rows if m["date_sent"] and keep(_sent_at(m), bound)]
        size = min(int(one.get("PageSize", 50)), 1000)
        page = int(one.get("Page", 0))
        chunk = rows[page * size : (page + 1) * size]
        base_query = {k: v for k, v in one.items() if k not in ("Page", "PageToken")}
        base_query["PageSize"] = str(size)

        def page_uri(n: int) -> str:
            return f"{path}?{urlencode({**base_query, 'Page': n, 'PageToken': f'PT{n}'})}"

        self._send_json(
            200,
            {
                "end": page * size + max(len(chunk) - 1, 0),
                "first_page_uri": page_uri(0),
                "messages": [_public(m) for m in chunk],
                "next_page_uri": page_uri(page + 1) if len(rows) > (page + 1) * size else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": page_uri(page - 1) if page else None,
                "start": page * size,
                "uri": page_uri(page),
            },
        )


def _sent_at(message: dict) -> datetime:
    return parsedate_to_datetime(message["date_sent"])


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm holds
    # the body back for the client's delayed ACK (~40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTwilio


class running_fake_twilio:
    """Context manager: a FakeTwilio listening on 127.0.0.1 at a random free port."""

    def __init__(self, account_sid: str, auth_token: str, *, keep_alive: bool = False) -> None:
        self.fake = FakeTwilio(account_sid=account_sid, auth_token=auth_token)
        # HTTP/1.1 keeps the client's connection open between requests, as Twilio's API
        # does (the benchmarks); HTTP/1.0 closes it after each answer (the tests).
        self.handler = _KeepAliveHandler if keep_alive else _Handler

    def __enter__(self) -> FakeTwilio:
        self.server = _Server(("127.0.0.1", 0), self.handler)
        self.server.fake = self.fake
        self.fake.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
