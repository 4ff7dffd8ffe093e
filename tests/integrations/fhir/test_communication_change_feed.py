"""FHIR Communication as a change feed: a real client (fhirpy) polls `_lastUpdated` against
a live server while texts are planned, sent through Twilio (a local stand-in), reported
delivered by Twilio's signed status callback and answered by the patient, and sees each
change of each text exactly once, in change order."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from fhirpy import SyncFHIRClient
from twilio.request_validator import RequestValidator

from careline.conversations.models import InboundMessage
from careline.integrations.api_keys import issue_api_key
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.twilio import TwilioGateway
from careline.messaging.models import MessageState, OutboundMessage
from careline.messaging.planning import sync_reminders
from tests.conversations.conftest import ALWAYS_OPEN, BASE, ORG_NUMBER, TOKEN, TwoWay
from tests.messaging.fake_twilio import running_fake_twilio

pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
STATUS_PATH = "/webhooks/twilio/status"


class Poller:
    """An analytics tool's loop: every text changed after the newest time seen, oldest
    first, two a page, following every next link; the newest meta.lastUpdated is the next
    `since`, exactly as the server wrote it."""

    def __init__(self, client: SyncFHIRClient):
        self.client = client
        self.since: str | None = None
        self.seen: list[tuple[str, str]] = []
        self.status: dict[str, str] = {}

    def poll(self) -> list[tuple[str, str]]:
        search = self.client.resources("Communication").sort("_lastUpdated").limit(2)
        if self.since:
            search = search.search(_lastUpdated=f"gt{self.since}")
        found = search.fetch_all()
        changes = [(r.id, r["meta"]["versionId"]) for r in found]
        if found:
            self.since = max(r["meta"]["lastUpdated"] for r in found)
        self.seen += changes
        self.status.update({r.id: r["status"] for r in found})
        return changes


class Texts:
    """What the database holds, to say what a poll must return: the texts whose version
    changed since the last look, in change order (change time, outbound before inbound,
    id)."""

    def __init__(self, organization):
        self.organization = organization
        self.known: dict[str, int] = {}

    def _stored(self) -> list[tuple[tuple, str, int]]:
        rows = [
            ((at, 0, pk), f"out-{pk}", version)
            for pk, version, at in OutboundMessage.objects.filter(
                organization=self.organization
            ).values_list("pk", "version", "last_updated")
        ] + [
            ((at, 1, pk), f"in-{pk}", version)
            for pk, version, at in InboundMessage.objects.filter(
                organization=self.organization
            ).values_list("pk", "version", "last_updated")
        ]
        return sorted(rows)

    def changed(self) -> list[tuple[str, str]]:
        stored = self._stored()
        changes = [(rid, str(v)) for _, rid, v in stored if self.known.get(rid) != v]
        self.known = {rid: v for _, rid, v in stored}
        return changes


def signed_status(url: str, sid: str, status: str) -> int:
    """Twilio's status callback, signed with Twilio's own validator, to `url`."""
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT_SID}
    signature = RequestValidator(TOKEN).compute_signature(BASE + STATUS_PATH, params)
    body = "&".join(f"{k}={v}" for k, v in params.items()).encode()
    request = Request(
        url + STATUS_PATH,
        data=body,
        method="POST",
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urlopen(request, timeout=30) as response:
        return response.status


def read(url: str, key: str, resource_id: str, etag: str | None = None):
    """GET Communication/<id> (conditionally with If-None-Match): (status, ETag, body)."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/fhir+json"}
    if etag:
        headers["If-None-Match"] = etag
    request = Request(f"{url}/fhir/R4/Communication/{resource_id}", headers=headers)
    try:
        with urlopen(request, timeout=30) as response:
            return response.status, response.headers["ETag"], json.loads(response.read())
    except HTTPError as exc:
        return exc.code, exc.headers["ETag"], None


class _Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def twoway(build, settings) -> TwoWay:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE
    settings.CARELINE_OFFICE_HOURS = ALWAYS_OPEN
    return TwoWay(build)


@pytest.fixture
def twilio(settings, twoway):
    with running_fake_twilio(ACCOUNT_SID, TOKEN) as server:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_API_BASE_URL = server.base_url
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.TWILIO_FROM_NUMBER = ORG_NUMBER
        settings.TWILIO_TIMEOUT_SECONDS = 5
        yield server


@pytest.fixture
def api_key(twoway) -> str:
    return issue_api_key(organization_slug=twoway.org.slug, name="analytics").plaintext


@pytest.fixture
def client(live_server, api_key) -> SyncFHIRClient:
    return SyncFHIRClient(f"{live_server.url}/fhir/R4", authorization=f"Bearer {api_key}")


def send_due(at: datetime) -> None:
    """The worker, through Twilio, at `at` (a reminder is due ahead of its visit)."""
    Dispatcher(TwilioGateway(), clock=_Clock(at), hours=SendingHours(0, 24)).run_once()


def test_a_poller_sees_each_change_of_each_text_exactly_once(
    client, twoway, twilio, live_server, api_key
):
    feed, texts = Poller(client), Texts(twoway.org)
    assert feed.poll() == texts.changed() == []

    # Planning: two visits' reminders and notices, each visit's rows inserted by one
    # statement per step with one change time; pages of two split those ties.
    ana, bea = twoway.patient(given_name="Ana"), twoway.patient(given_name="Bea")
    visit = twoway.visit(ana, twoway.local(2, 10))
    twoway.visit(bea, twoway.local(3, 11))
    planned = texts.changed()
    assert len(planned) >= 4
    stamps = OutboundMessage.objects.filter(appointment=visit).values_list(
        "last_updated", flat=True
    )
    assert len(stamps) >= 2 and len(set(stamps)) == 1, "one plan, one change time: the tie"
    assert feed.poll() == planned
    assert {v for _, v in planned} == {"1"}
    assert set(feed.status.values()) == {"preparation"}
    assert feed.poll() == []

    # Dispatch: the worker sends Ana's reminder (and whatever else is due by then)
    # through Twilio, which accepts it: in progress, with its sent time.
    reminder = OutboundMessage.objects.get(appointment=visit, step_key="reminder:1440")
    send_due(reminder.due_at + timedelta(minutes=1))
    reminder.refresh_from_db()
    assert reminder.state == MessageState.SENT
    dispatched = texts.changed()
    assert (f"out-{reminder.pk}", str(reminder.version)) in dispatched
    assert feed.poll() == dispatched
    assert feed.status[f"out-{reminder.pk}"] == "in-progress"
    assert feed.poll() == []

    # The read a client caches: its ETag is the version, and a conditional read is 304
    # until the text changes.
    status, etag, body = read(live_server.url, api_key, f"out-{reminder.pk}")
    assert status == 200 and etag == f'W/"{reminder.version}"'
    assert body["meta"]["versionId"] == str(reminder.version) and "sent" in body
    assert read(live_server.url, api_key, f"out-{reminder.pk}", etag)[0] == 304

    # Twilio's status callback: delivered. One change, of that text only.
    assert signed_status(live_server.url, reminder.provider_message_id, "delivered") == 204
    assert feed.poll() == texts.changed() == [(f"out-{reminder.pk}", str(reminder.version + 1))]
    assert feed.status[f"out-{reminder.pk}"] == "completed"
    status, new_etag, body = read(live_server.url, api_key, f"out-{reminder.pk}", etag)
    assert status == 200 and new_etag == f'W/"{reminder.version + 1}"' and "received" in body
    # Twilio sends the report again: nothing changed, nothing to see.
    assert signed_status(live_server.url, reminder.provider_message_id, "delivered") == 204
    assert feed.poll() == texts.changed() == []

    # Ana answers C: her text arrives (a new inbound Communication), the visit is
    # confirmed, Careline's answer is queued and reminders left are withdrawn.
    twoway.text(ana.mobile_phone, "C")
    reply = InboundMessage.objects.get(organization=twoway.org)
    answered = texts.changed()
    assert (f"in-{reply.pk}", "1") in answered
    assert feed.poll() == answered
    assert feed.status[f"in-{reply.pk}"] == "completed"

    # The answer goes out.
    send_due(datetime.now(UTC) + timedelta(minutes=1))
    sent_answer = texts.changed()
    assert sent_answer
    assert feed.poll() == sent_answer
    assert feed.poll() == []

    # Every change once, none twice; each text's versions seen in order.
    assert len(feed.seen) == len(set(feed.seen))
    for rid, version in texts.known.items():
        seen = [int(v) for i, v in feed.seen if i == rid]
        assert seen == sorted(seen) and seen[-1] == version


def test_status_callbacks_racing_the_poller_are_each_seen_once(client, twoway, twilio, live_server):
    """Twilio's reports commit in any order while the poller polls; a report that commits
    after a poll read past its change time would be lost for good. None is."""
    patients = [twoway.patient() for _ in range(8)]
    visits = [twoway.visit(p, twoway.local(2, 9 + i % 8)) for i, p in enumerate(patients)]
    sync_reminders([v.pk for v in visits])
    latest = max(
        OutboundMessage.objects.filter(step_key="reminder:1440").values_list("due_at", flat=True)
    )
    send_due(latest + timedelta(minutes=1))
    sent = list(OutboundMessage.objects.filter(state=MessageState.SENT))
    assert len(sent) >= len(visits)
    feed = Poller(client)
    feed.poll()

    def report(message: OutboundMessage) -> None:
        assert signed_status(live_server.url, message.provider_message_id, "delivered") == 204

    writers = [threading.Thread(target=report, args=(m,)) for m in sent]
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers):
        feed.poll()
    for writer in writers:
        writer.join()
    feed.poll()
    delivered = {(f"out-{m.pk}", str(m.version + 1)) for m in sent}
    assert delivered <= set(feed.seen)
    assert len(feed.seen) == len(set(feed.seen))
