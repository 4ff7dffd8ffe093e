"""Property-based: malformed JSON and resources at every endpoint get a 4xx OperationOutcome;
every search parameter and every write door of every resource, as the CapabilityStatement
lists them, refuses odd values by name (never a 500) or stores what it answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.integrations.fhir.capability import capability_statement
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


# --- every search parameter and every write, derived from the CapabilityStatement ------------
# New resources, parameters and write interactions are covered as soon as metadata lists
# them; a new writable type fails test_every_writable_type_has_an_example until it has one.

STATEMENT = capability_statement("http://testserver/fhir/R4/")["rest"][0]
SEARCHABLE = {
    r["type"]: {p["name"]: p["type"] for p in r["searchParam"]} for r in STATEMENT["resource"]
}
WRITABLE = sorted(
    r["type"]
    for r in STATEMENT["resource"]
    if {"create", "update"} & {i["code"] for i in r["interaction"]}
)
SEARCH_FUZZ = settings(FUZZ, max_examples=40)
WRITE_FUZZ = settings(FUZZ, max_examples=40)

# Digits from other scripts, which str.isdigit(), int() or \d accept where ASCII is meant.
FOREIGN_DIGITS = ["²", "٣", "٢٠٣١", "２０３１", "¹⁰", "߃", "𝟘"]
numbers = (
    st.sampled_from(
        ["0", "1", "-1", "00000005", "2147483647", "2147483648", "9223372036854775808",
         "99999999999999999999", "1e3", "1.5", " 7", "", *FOREIGN_DIGITS]
    )
    | st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.text(alphabet="0123456789²٣٢٠١߃", min_size=1, max_size=22)
)  # fmt: skip
years = st.sampled_from(
    ["0000", "0001", "0999", "1000", "1899", "1900", "2031", "2199", "2200", "8999", "9998",
     "9999", "٢٠٣١", "２０３１", "20²1"]
)  # fmt: skip
two_digits = st.sampled_from(["00", "01", "06", "12", "13", "23", "24", "29", "31", "59", "60",
                              "99", "٠٣", "0²"])  # fmt: skip
offsets = st.sampled_from(["", "Z", "+00:00", "+14:00", "-12:00", "+23:59", "+99:99", "-٠٥:00"])
prefixes = st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"])


@st.composite
def date_shapes(draw) -> str:
    """FHIR dates of every precision, at and past the ends of the calendar."""
    value = draw(years)
    precision = draw(st.integers(min_value=0, max_value=4))
    if precision >= 1:
        value += "-" + draw(two_digits)
    if precision >= 2:
        value += "-" + draw(two_digits)
    if precision >= 3:
        value += f"T{draw(two_digits)}:{draw(two_digits)}"
        if precision == 4:
            value += f":{draw(two_digits)}" + draw(st.sampled_from(["", ".5", ".123456"]))
        value += draw(offsets)
    return value


def reference_shapes(kinds: list[str]):
    return st.builds(
        lambda kind, id_: f"{kind}/{id_}" if kind else id_,
        st.sampled_from(["", *kinds, "Bogus"]),
        numbers | st.text(max_size=8),
    )


SEARCH_VALUES = {
    "date": prefixes.flatmap(lambda p: date_shapes().map(lambda d: p + d)),
    "reference": reference_shapes(["Patient", "Practitioner", "Location", "Schedule",
                                   "Appointment"]),  # fmt: skip
    "token": st.sampled_from(["true", "false", "free", "booked", "out-1", "in-²", "1-1",
                              "urn:x|", "|", "MR|٣"]) | numbers | st.text(max_size=12),
    "string": st.text(max_size=12) | numbers,
}  # fmt: skip


def search_values(kind: str):
    """One value of a parameter of `kind`, sometimes a comma-separated list."""
    one = SEARCH_VALUES.get(kind, st.text(max_size=12))
    return st.lists(one, min_size=1, max_size=3).map(",".join)


@st.composite
def searches(draw, resource_type: str) -> dict[str, str]:
    declared = SEARCHABLE[resource_type]
    names = draw(st.lists(st.sampled_from(sorted(declared)), min_size=1, max_size=3, unique=True))
    params = {name: draw(search_values(declared[name])) for name in names}
    for common in ("_count", "_offset"):
        if draw(st.booleans()):
            params[common] = draw(numbers)
    return params


def assert_names_a_parameter(response, resource_type: str, params: dict[str, str]) -> None:
    """A refused search is an OperationOutcome whose expression names the parameter at
    fault: one sent, or a required one missing."""
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        outcome(response)
        expression = response.json()["issue"][0].get("expression", [])
        assert set(expression) & {*params, *SEARCHABLE[resource_type]}, (params, response.json())


@pytest.mark.parametrize("resource_type", sorted(SEARCHABLE))
@pytest.mark.django_db
@SEARCH_FUZZ
@given(data=st.data())
def test_every_search_parameter_refuses_bad_values_by_name(fhir, world_ids, resource_type, data):
    params = data.draw(searches(resource_type))
    if resource_type == "Slot" and data.draw(st.booleans()):
        params["schedule"] = f"Schedule/{world_ids['Schedule']}"
    response = fhir.get(resource_type, **params)
    assert_names_a_parameter(response, resource_type, params)
    if response.status_code == 200:
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle"
        for link in bundle["link"]:
            # The paging links the server hands out are themselves valid searches.
            query = link["url"].split("?", 1)[1]
            follow = fhir.client.get(f"/fhir/R4/{resource_type}?{query}", headers=fhir._headers())
            assert follow.status_code == 200, (link, follow.content)


def examples(world_ids: dict[str, str]) -> dict[str, dict]:
    """A valid body of each writable type, for the fuzzer to bend."""
    ref = {kind: f"{kind}/{world_ids[kind]}" for kind in ("Patient", "Practitioner", "Location")}
    return {
        "Patient": {
            "resourceType": "Patient",
            "identifier": [{"value": "MRN-FUZZ"}],
            "name": [{"family": "Lee", "given": ["Ana"]}],
            "telecom": [{"system": "sms", "value": "+15125550142"}],
            "birthDate": "1980-02-03",
        },
        "Practitioner": {
            "resourceType": "Practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
            "name": [{"family": "Ng", "prefix": ["Dr"]}],
            "active": True,
        },
        "Location": {
            "resourceType": "Location",
            "identifier": [{"value": "LOC-FUZZ"}],
            "name": "Fuzz Clinic",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/timezone",
                    "valueCode": "America/Chicago",
                }
            ],
            "telecom": [{"system": "phone", "value": "+15125550177"}],
        },
        "Appointment": {
            "resourceType": "Appointment",
            "identifier": [{"system": "urn:fuzz", "value": "A-FUZZ"}],
            "status": "booked",
            "start": "2031-01-06T15:00:00Z",
            "end": "2031-01-06T15:20:00Z",
            "minutesDuration": 20,
            "meta": {"lastUpdated": "2031-01-01T00:00:00Z"},
            "participant": [
                {"actor": {"reference": ref[kind]}, "status": "accepted"}
                for kind in ("Patient", "Practitioner", "Location")
            ],
        },
    }


def leaves(value, path=()):
    """The paths of every scalar in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "resourceType":
                yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    else:
        yield path


DROP = object()


def replaced(body, path, new):
    """A copy of `body` with the value at `path` replaced by `new` (DROP: removed)."""
    body = json.loads(json.dumps(body))
    target = body
    for part in path[:-1]:
        target = target[part]
    if new is DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return body


# Well-formed instants and dates, so values get past the FHIR model to Careline's own
# rules: the ends of the calendar, and moments seconds after the example's start.
instants = st.builds(
    "{}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
    years,
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["Z", "+14:00", "-12:00", "+05:30"]),
) | st.integers(0, 90).map(lambda s: f"2031-01-06T15:{s // 60:02d}:{s % 60:02d}Z")
dates = st.builds("{}-{:02d}-{:02d}".format, years, st.integers(1, 12), st.integers(1, 28))
leaf_values = (
    instants
    | dates
    | date_shapes()
    | numbers
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -1, 2**31, 2**63, 10**20, 1e300, "", True, None])
    | reference_shapes(["Patient", "Practitioner", "Location"])
)


@st.composite
def bent(draw, body: dict) -> dict:
    """The example with one to three of its values replaced by odd shapes or left out."""
    paths = list(leaves(body))
    chosen = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True))
    # Deepest first, and list items from the end, so a removal moves no other path.
    for path in sorted(chosen, key=lambda p: (len(p), p[-1] if isinstance(p[-1], int) else -1))[
        ::-1
    ]:
        body = replaced(body, path, draw(leaf_values | st.just(DROP)))
    return body


def test_every_writable_type_has_an_example():
    assert sorted(examples(dict.fromkeys(["Patient", "Practitioner", "Location"], "1"))) == (
        WRITABLE
    )


def assert_readable_back(fhir, resource_type: str, response) -> None:
    """A write that answered 2xx stored what it answered: read and search return it."""
    written = response.json()
    read = fhir.get(f"{resource_type}/{written['id']}")
    assert read.status_code == 200, read.content
    assert read.json() == written
    found = fhir.get(resource_type, _id=written["id"])
    assert found.status_code == 200, found.content
    assert [e["resource"] for e in found.json().get("entry", [])] == [written]


@pytest.mark.parametrize("resource_type", WRITABLE)
@pytest.mark.django_db
@WRITE_FUZZ
@given(data=st.data())
def test_every_write_refuses_bad_values_by_name_or_stores_them_readably(
    fhir, world_ids, resource_type, data
):
    example = examples(world_ids)[resource_type]
    body = data.draw(bent(example))
    with each_example_on_its_own():
        check_write_doors(fhir, resource_type, example, body)


@contextmanager
def each_example_on_its_own() -> Iterator[None]:
    """Hypothesis runs many examples in one test's database: undo each one's writes."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def check_write_doors(fhir, resource_type: str, example: dict, body: dict) -> None:
    stored = fhir.post(resource_type, example)
    assert stored.status_code == 201, stored.content
    stored_id = stored.json()["id"]
    conditional = f"{resource_type}?_id={stored_id}"
    for method, path in (
        ("post", resource_type),
        ("put", f"{resource_type}/{stored_id}"),
        ("put", conditional),
    ):
        before = fhir.get(f"{resource_type}/{stored_id}").json()
        response = getattr(fhir, method)(path, body)
        assert response.status_code < 500, response.content
        if response.status_code >= 400:
            outcome(response)
            if response.status_code in (400, 422):
                assert response.json()["issue"][0].get("expression"), response.json()
            assert fhir.get(f"{resource_type}/{stored_id}").json() == before
        else:
            assert_readable_back(fhir, resource_type, response)


@pytest.mark.django_db
@WRITE_FUZZ
@given(
    start=instants,
    length=st.one_of(
        st.integers(-120, 120).map(lambda s: timedelta(seconds=s)),
        st.integers(1, 3000).map(lambda m: timedelta(minutes=m)),
    ),
    minutes=st.none() | st.integers(min_value=1, max_value=2**31 - 1),
)
def test_any_visit_length_at_any_time_is_refused_by_name_or_stored_readably(
    fhir, world_ids, start, length, minutes
):
    """Appointment times from the ends of the calendar, lasting seconds to days."""
    body = examples(world_ids)["Appointment"]
    try:
        begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
        body["end"] = (begin + length).isoformat()
    except (ValueError, OverflowError):
        return  # not a time Python can add to; the FHIR model refuses those shapes
    body["start"] = start
    if minutes is None:
        del body["minutesDuration"]
    else:
        body["minutesDuration"] = minutes
    with each_example_on_its_own():
        check_write_doors(fhir, "Appointment", examples(world_ids)["Appointment"], body)
