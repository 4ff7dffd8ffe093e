"""Property-based: malformed JSON and resources at every endpoint get a 4xx OperationOutcome."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.integrations.fhir.registry import HANDLERS
from tests.integrations.fhir.conftest import outcome

TYPES = sorted(HANDLERS)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

# Names that exist on these resources, so the fuzzer reaches past "unknown element".
FIELDS = [
    "id", "meta", "identifier", "name", "telecom", "birthDate", "communication", "address",
    "extension", "status", "start", "end", "participant", "appointmentType",
    "cancelationReason", "active", "schedule", "actor", "payload", "gender",
]  # fmt: skip


def resources_of(resource_type: str):
    return st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5).map(
        lambda fields: {"resourceType": resource_type, **fields}
    )


participant = st.fixed_dictionaries(
    {
        "actor": st.fixed_dictionaries(
            {
                "reference": st.sampled_from(
                    ["Patient/", "Practitioner/", "Location/", "X/"]
                ).flatmap(lambda t: st.text(max_size=8).map(lambda s: t + s))
            }
        ),
        "status": st.sampled_from(["accepted", "declined", "tentative", "needs-action"]),
    }
)
appointments = st.fixed_dictionaries(
    {
        "resourceType": st.just("Appointment"),
        "status": st.sampled_from(["booked", "proposed", "cancelled", "noshow", "arrived"]),
        "participant": st.lists(participant, min_size=1, max_size=4),
    },
    optional={
        "start": st.sampled_from(["2031-01-01T10:00:00Z", "2031-01-01T09:00:00+05:00"]),
        "end": st.sampled_from(["2031-01-01T10:20:00Z", "2030-12-31T10:00:00Z"]),
        "identifier": st.lists(
            st.fixed_dictionaries({"system": st.text(max_size=80), "value": st.text(max_size=150)}),
            max_size=2,
        ),
        "appointmentType": st.fixed_dictionaries({"text": st.text(max_size=60)}),
    },
)


def assert_refused_cleanly(response, *, allow_success: bool) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400 or not allow_success:
        assert 400 <= response.status_code < 500, response.content
        outcome(response)


@pytest.mark.django_db
@FUZZ
@given(resource_type=st.sampled_from(TYPES), body=st.binary(max_size=60) | st.text(max_size=60))
def test_malformed_json_is_400_everywhere(fhir, resource_type, body):
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and parsed.get("resourceType") == resource_type:
            return
    except (ValueError, UnicodeDecodeError):
        pass
    for method, path in (
        ("post", resource_type),
        ("put", f"{resource_type}/1"),
        ("put", f"{resource_type}?identifier=x"),
    ):
        response = getattr(fhir, method)(path, body)
        assert_refused_cleanly(response, allow_success=False)


@pytest.mark.django_db
@FUZZ
@given(data=st.data())
def test_random_resources_never_break_the_server(fhir, world_ids, data):
    resource_type = data.draw(st.sampled_from(TYPES))
    body = data.draw(resources_of(resource_type) | json_values)
    for path in (resource_type, f"{resource_type}/{world_ids[resource_type]}"):
        method = "post" if "/" not in path else "put"
        assert_refused_cleanly(getattr(fhir, method)(path, body), allow_success=True)


@pytest.mark.django_db
@FUZZ
@given(body=appointments)
def test_random_appointments_never_break_the_server(fhir, world_ids, body):
    for participant_ in body["participant"]:
        ref = participant_["actor"]["reference"]
        # Point some references at real rows so validation goes deep.
        kind = ref.split("/")[0]
        if kind in world_ids and ref.endswith("1"):
            participant_["actor"]["reference"] = f"{kind}/{world_ids[kind]}"
    response = fhir.post("Appointment", body)
    assert_refused_cleanly(response, allow_success=True)


@pytest.mark.django_db
@FUZZ
@given(
    resource_type=st.sampled_from(TYPES),
    resource_id=st.text(max_size=25).filter(lambda s: not set(s) & set("/?#")),
    params=st.dictionaries(
        st.sampled_from(
            ["_id", "identifier", "date", "patient", "status", "telecom", "_count", "_offset",
             "schedule", "start", "actor", "sent", "name", "birthdate", "bogus"]
        ),
        st.text(max_size=25),
        max_size=3,
    ),
)  # fmt: skip
def test_random_reads_and_searches_never_break_the_server(fhir, resource_type, resource_id, params):
    search = fhir.get(resource_type, **params)
    assert_refused_cleanly(search, allow_success=True)
    if search.status_code == 200:
        assert search.json()["resourceType"] == "Bundle"
    read = fhir.client.get(f"/fhir/R4/{resource_type}/{resource_id}", headers=fhir._headers())
    assert_refused_cleanly(read, allow_success=True)


@pytest.fixture
def world_ids(build, org) -> dict[str, str]:
    practice = build.practice(org)
    provider = build.provider(practice)
    patient = build.patient(org)
    return {
        "Patient": str(patient.pk),
        "Practitioner": str(provider.pk),
        "Location": str(practice.pk),
        "Schedule": f"{provider.pk}-{practice.pk}",
        "Slot": f"{provider.pk}-{practice.pk}-1900000000-20",
        "Appointment": "1",
        "Communication": "out-1",
    }
