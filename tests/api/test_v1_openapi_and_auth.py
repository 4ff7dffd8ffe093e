"""The OpenAPI document is valid and complete; every endpoint refuses missing, wrong and
revoked keys, other organizations' objects, and wrong methods, in JSON."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from openapi_spec_validator import validate

from careline.api.v1.http import unknown_endpoint
from careline.api.v1.openapi import openapi_document
from careline.broadcasts.sending import Audience, send_broadcast
from careline.integrations.api_keys import issue_api_key, revoke_api_key
from careline.integrations.feeds import add_feed
from careline.messaging.touches import start_policy
from tests.api.conftest import Api, error, make_appointment, make_conversation

# One request per documented operation, with ids filled in by the test.
OPERATIONS = [
    ("GET", "conversations"),
    ("GET", "conversations/{conversation}"),
    ("POST", "conversations/{conversation}/reply"),
    ("POST", "conversations/{conversation}/close"),
    ("GET", "broadcasts"),
    ("POST", "broadcasts"),
    ("GET", "broadcasts/{broadcast}"),
    ("GET", "reminder-rules"),
    ("PUT", "reminder-rules"),
    ("GET", "response-limits"),
    ("PUT", "response-limits"),
    ("GET", "appointments/{appointment}/planned-messages"),
    ("GET", "reports/appointments"),
    ("GET", "reports/before-after"),
    ("GET", "hl7-feeds"),
    ("POST", "hl7-feeds"),
    ("GET", "hl7-feeds/{hl7_feed}"),
    ("DELETE", "hl7-feeds/{hl7_feed}"),
    ("GET", "extra-touch"),
    ("POST", "extra-touch"),
    ("GET", "extra-touch/{extra_touch}"),
    ("POST", "extra-touch/{extra_touch}/stop"),
]


def _api_routes():
    """(OpenAPI path, methods) of every route under api/v1/ in the urlconf."""

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern), p.callback

    for route, callback in walk(get_resolver().url_patterns):
        if route.startswith("api/v1/") and callback is not unknown_endpoint:
            path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.removeprefix("api/v1/"))
            yield path, callback.allowed_methods


def test_the_document_is_valid_openapi_3_1():
    document = openapi_document("https://careline.example.org/api/v1")
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_and_method_is_documented_and_nothing_else():
    documented = {
        path: {m.upper() for m in operations}
        for path, operations in openapi_document("/api/v1")["paths"].items()
    }
    routes = {path: set(methods) for path, methods in _api_routes()}
    assert routes == documented
    assert len(routes) == 25


@pytest.mark.django_db
def test_openapi_json_is_served_without_a_key_and_names_this_server():
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["servers"] == [{"url": "http://testserver/api/v1"}]


@pytest.fixture
def objects(build, org, practice):
    build.patient(org, home_practice=practice)
    return {
        "appointment": make_appointment(build, practice).pk,
        "conversation": make_conversation(practice).pk,
        "broadcast": send_broadcast(
            organization_id=org.id,
            audience=Audience(practice_ids=(practice.id,)),
            name="Closed Friday",
            body_en="Hi {first_name}, {practice} is closed Friday.",
        ).pk,
        "hl7_feed": add_feed(org, name="ATHENA").pk,
        "extra_touch": start_policy(
            organization_id=org.id,
            practice_id=practice.id,
            threshold=0.3,
            touch_basis_points=5000,
            now=timezone.now(),
        ).pk,
    }


def _call(api: Api, method: str, template: str, objects: dict[str, int]):
    return api.request(method, template.format(**objects), {} if method != "GET" else None)


@pytest.mark.parametrize("method,template", OPERATIONS)
def test_no_wrong_or_revoked_key_is_401_everywhere(org, objects, method, template):
    issued = issue_api_key(organization_slug=org.slug, name="old")
    revoke_api_key(issued.api_key.prefix)
    for key, reason in (
        (None, "Authentication required"),
        ("cl_000000000000_" + "a" * 43, "not valid"),
        ("hunter2", "not a Careline API key"),
        (issued.plaintext, "revoked"),
    ):
        response = _call(Api(key), method, template, objects)
        assert response.status_code == 401, (key, response.content)
        assert response["WWW-Authenticate"] == "Bearer"
        assert error(response)["code"] == "unauthorized"
        assert reason in error(response)["message"]


def test_a_basic_auth_header_is_refused(api):
    response = api.client.get(
        "/api/v1/conversations", headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert response.status_code == 401
    assert "Bearer" in error(response)["message"]


@pytest.mark.parametrize("method,template", [op for op in OPERATIONS if "{" in op[1]])
def test_another_organizations_objects_are_not_found(build, objects, method, template):
    stranger = Api(issue_api_key(organization_slug=build.organization().slug, name="x").plaintext)
    response = _call(stranger, method, template, objects)
    assert response.status_code == 404, response.content
    assert error(response)["code"] == "not_found"


def test_ids_no_row_can_have_are_not_found_rather_than_overflowing(api):
    for path in ("conversations/99999999999999999999999", "broadcasts/0"):
        response = api.get(path)
        assert response.status_code == 404, response.content


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("DELETE", "conversations", "GET"),
        ("GET", "conversations/1/reply", "POST"),
        ("PATCH", "broadcasts", "GET, POST"),
        ("POST", "reminder-rules", "GET, PUT"),
        ("POST", "reports/appointments", "GET"),
        ("POST", "openapi.json", "GET"),
    ],
)
def test_wrong_methods_are_405_with_allow(api, method, path, allowed):
    response = api.request(method, path, {} if method != "GET" else None)
    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert error(response)["code"] == "method_not_allowed"


def test_unknown_paths_are_json_404s(api):
    for path in ("nothing", "conversations/", "conversations/abc", "reports/"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "openapi.json" in error(response)["message"]
