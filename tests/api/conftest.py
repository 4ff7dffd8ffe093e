"""A client for /api/v1/ that checks every JSON answer against the OpenAPI document."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import resolve
from django.utils import timezone
from openapi_schema_validator import OAS31Validator

from careline.api.v1.http import unknown_endpoint
from careline.api.v1.openapi import openapi_document
from careline.conversations.models import Conversation, InboundMessage
from careline.integrations.api_keys import issue_api_key

DOCUMENT = openapi_document("http://testserver/api/v1")
_sids = itertools.count(1)


def documented_path(request_path: str) -> str | None:
    """The OpenAPI path of a request path, e.g. /conversations/{conversation_id}."""
    match = resolve(request_path)
    if match.func is unknown_endpoint:
        return None
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", match.route.removeprefix("api/v1/"))


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    operation = DOCUMENT["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} answered {status}, which is not documented"
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return response["content"]["application/json"]["schema"]


def check_against_document(method: str, path: str, response) -> None:
    assert response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    template = documented_path(path)
    if template is None or method.lower() not in DOCUMENT["paths"][template]:
        assert response.status_code in (404, 405, 401), response.status_code
        schema = {"$ref": "#/components/schemas/Error"}
    else:
        schema = response_schema(template, method, response.status_code)
    OAS31Validator(
        {**schema, "components": DOCUMENT["components"]},
        format_checker=OAS31Validator.FORMAT_CHECKER,
    ).validate(body)


class Api:
    """Requests against /api/v1/ with one bearer key (or none)."""

    def __init__(self, key: str | None):
        self.client = Client()
        self.key = key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def request(self, method: str, path: str, body: Any = None, query: str = "", **params: Any):
        url = f"/api/v1/{path}"
        kwargs: dict[str, Any] = {"headers": self._headers()}
        if body is not None:
            kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
            kwargs["content_type"] = "application/json"
        query = query or urlencode(params)
        response = self.client.generic(method, f"{url}?{query}" if query else url, **kwargs)
        check_against_document(method, url, response)
        return response

    def get(self, path: str, **params: Any):
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any = None, **params: Any):
        return self.request("POST", path, body, **params)

    def put(self, path: str, body: Any = None, **params: Any):
        return self.request("PUT", path, body, **params)


def error(response) -> dict[str, Any]:
    return response.json()["error"]


@pytest.fixture
def org(build):
    return build.organization()


@pytest.fixture
def practice(build, org):
    return build.practice(org, name="Oak Clinic")


@pytest.fixture
def api(org) -> Api:
    return Api(issue_api_key(organization_slug=org.slug, name="Epic interface").plaintext)


def make_conversation(practice, *, phone: str = "+15125550123", minutes_ago: int = 10, **kw):
    """A conversation with one text from the patient, as the inbox receives it."""
    at = timezone.now() - timedelta(minutes=minutes_ago)
    conversation = Conversation.objects.create(
        organization=practice.organization,
        practice=practice,
        phone=phone,
        created_at=at,
        opened_at=at,
        last_patient_message_at=at,
        unread_count=1,
        **kw,
    )
    InboundMessage.objects.create(
        provider_message_id=f"SM-api-{next(_sids)}",
        organization=practice.organization,
        practice=practice,
        from_phone=phone,
        to_phone="+15125550100",
        body="Can I bring my daughter too?",
        received_at=at,
        conversation=conversation,
    )
    return conversation


def make_appointment(build, practice, *, days_ahead: int = 10):
    """A booked visit as a feed would write it (no planning side effects)."""
    from careline.scheduling.models import Appointment, ChangeSource

    start = timezone.now() + timedelta(days=days_ahead)
    return Appointment.objects.create(
        organization=practice.organization,
        practice=practice,
        provider=build.provider(practice, hours=None),
        patient=build.patient(practice.organization, home_practice=practice),
        appointment_type=build.appointment_type(practice.organization),
        start=start,
        end=start + timedelta(minutes=20),
        status_changed_at=timezone.now(),
        status_source=ChangeSource.HL7,
        allow_overlap=True,
    )
