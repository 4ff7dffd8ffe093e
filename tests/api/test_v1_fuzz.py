"""Property-based: random query strings and JSON bodies at every endpoint never get a 500,
and every answer is JSON matching the OpenAPI document (checked by the Api client)."""

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
whole_numbers = st.lists(st.integers(min_value=-5, max_value=10**6), max_size=4)
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
    assert_clean(api.request(method, template.format(**ids), body, query=query))


@pytest.mark.parametrize("method,template", WRITES)
@FUZZ
@given(raw=st.binary(max_size=40) | json_values.map(json.dumps))
def test_random_bytes_as_a_body_never_break_a_write(api, ids, method, template, raw):
    assert_clean(api.request(method, template.format(**ids), raw))
