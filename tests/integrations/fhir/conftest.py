"""A FHIR client on Django's test client, with a key for one organization."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from careline.integrations.api_keys import issue_api_key

FHIR_JSON = "application/fhir+json"


class Fhir:
    """Requests against /fhir/R4/ as one API key; responses decoded from JSON."""

    def __init__(self, key: str | None):
        self.client = Client()
        self.key = key

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        headers.update(extra or {})
        return headers

    def get(self, path: str, **params: Any):
        return self.client.get(f"/fhir/R4/{path}", params, headers=self._headers())

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(
            f"/fhir/R4/{path}", data, content_type=FHIR_JSON, headers=self._headers(headers)
        )

    def put(self, path: str, body: Any):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.put(
            f"/fhir/R4/{path}", data, content_type=FHIR_JSON, headers=self._headers()
        )


@pytest.fixture
def org(build):
    return build.organization()


@pytest.fixture
def fhir(org) -> Fhir:
    return Fhir(issue_api_key(organization_slug=org.slug, name="tests").plaintext)


def outcome(response) -> str:
    """The diagnostics of an OperationOutcome response (asserting that is what it is)."""
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(issue.get("diagnostics", "") for issue in body["issue"])
