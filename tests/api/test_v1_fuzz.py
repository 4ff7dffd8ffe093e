"""Property-based: random query strings and JSON bodies at every endpoint never get a 500,
every answer is JSON matching the OpenAPI document (checked by the Api client), and what a
write answered with is what a read returns afterwards."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.broadcasts.sending import Audience, send_broadcast
from tests.api.conftest import make_appointment, make_conversation

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Names the endpoints know, so the fuzzer gets past "unknown parameter/field".
PARAMETERS = [
    "state", "queue", "practice", "limit", "cursor", "dry_run", "group_by", "from", "to",
    "window_days",
]  # fmt: skip
FIELDS = [
    "body", "name", "body_en", "body_es", "send_at", "audience", "offsets_minutes", "channel",
    "stop_when_confirmed", "send_event_messages", "active",
]  # fmt: skip
AUDIENCE_FIELDS = [
    "practice_ids", "provider_ids", "appointment_type_ids", "appointments_from",
    "appointments_to", "language", "seen_since",
]  # fmt: skip
INTERESTING = [
    "", "0", "1", "-1", "true", "closed", "billing", "week", "en", "sms", "2026-10-05",
    "2026-10-05T09:00:00+00:00", "9999-12-31", "0001-01-01", "18446744073709551616", "1e400",
    "\x00", "{first_name}", "null", "NaN", "open", "general", "provider", "month", "180",
    "false", "50",
    # Digits of other scripts, overflowing numbers, the ends of the calendar and offsets.
    "²", "٣", "٢٠٢٦-10-05", "2026-1٠-05", "２０２６-10-05T09:00:00+00:00", "99999999999999999999",
    "9223372036854775808", "-0", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00",
    "2026-10-05T09:00:00+23:59", "2999-12-31", "1899-12-31", "3000-01-01",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(INTERESTING)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
whole_numbers = st.lists(
    st.integers(min_value=-5, max_value=10**6) | st.sampled_from([2**31, 2**63, 2**64, 10**20]),
    max_size=4,
)
audiences = st.dictionaries(
    st.sampled_from(AUDIENCE_FIELDS), json_values | whole_numbers, max_size=4
)
bodies = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=6),
    json_values | audiences | whole_numbers,
    max_size=5,
)
query_values = st.sampled_from(INTERESTING) | st.text(max_size=12)
query_strings = st.lists(
    st.tuples(st.sampled_from(PARAMETERS) | st.text(max_size=6), query_values), max_size=4
).map(lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs))

GETS = [
    "conversations",
    "conversations/{conversation}",
    "broadcasts",
    "broadcasts/{broadcast}",
    "reminder-rules",
    "appointments/{appointment}/planned-messages",
    "reports/appointments",
    "reports/before-after",
]
WRITES = [
    ("POST", "conversations/{conversation}/reply"),
    ("POST", "conversations/{conversation}/close"),
    ("POST", "broadcasts"),
    ("PUT", "reminder-rules"),
]


@pytest.fixture
def ids(build, org, practice):
    build.patient(org, home_practice=practice)
    return {
        "appointment": make_appointment(build, practice).pk,
        "conversation": make_conversation(practice).pk,
        "broadcast": send_broadcast(
            organization_id=org.id,
            audience=Audience(practice_ids=(practice.pk,)),
            name="b",
            body_en="Hello",
        ).pk,
    }


def assert_clean(response) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


@pytest.mark.parametrize("template", GETS)
@FUZZ
@given(query=query_strings)
def test_random_query_strings_never_break_a_read(api, ids, template, query):
    assert_clean(api.get(template.format(**ids), query=query))


@pytest.mark.parametrize("method,template", WRITES)
@FUZZ
@given(body=bodies, query=st.just("") | query_strings)
def test_random_json_bodies_never_break_a_write(api, ids, method, template, body, query):
    response = api.request(method, template.format(**ids), body, query=query)
    assert_clean(response)
    if response.status_code < 300 and "dry_run" not in query:
        assert_readable_back(api, template.format(**ids), response)


def assert_readable_back(api, path: str, response) -> None:
    """What a write answered with is what a read returns afterwards."""
    written = response.json()
    if path == "broadcasts":
        assert api.get(f"broadcasts/{written['id']}").json() == written
    elif path == "reminder-rules":
        assert api.get("reminder-rules").json() == written
    elif path.endswith("/reply"):
        thread = api.get(path.removesuffix("/reply")).json()
        assert written["reply"] in thread["messages"]
        assert {k: v for k, v in thread.items() if k not in ("messages", "older_messages")} == (
            written["conversation"]
        )
    elif path.endswith("/close"):
        shown = api.get(path.removesuffix("/close")).json()
        assert {k: v for k, v in shown.items() if k not in ("messages", "older_messages")} == (
            written
        )


@pytest.mark.parametrize("template", [*GETS, *(t for _, t in WRITES)])
@pytest.mark.parametrize(
    "bad_id", ["0", "99999999999999999999", "9223372036854775808", "²", "٣", "-1", "1e3"]
)
def test_an_id_that_cannot_name_a_row_is_404(api, ids, template, bad_id):
    if "{" not in template:
        return
    key = template[template.index("{") + 1 : template.index("}")]
    path = template.format(**{**ids, key: bad_id})
    method = dict((t, m) for m, t in WRITES).get(template, "GET")
    response = api.request(method, path, {} if method != "GET" else None)
    assert response.status_code == 404, response.content


@pytest.mark.parametrize("method,template", WRITES)
@FUZZ
@given(raw=st.binary(max_size=40) | json_values.map(json.dumps))
def test_random_bytes_as_a_body_never_break_a_write(api, ids, method, template, raw):
    assert_clean(api.request(method, template.format(**ids), raw))
