"""Bearer authentication shared by the FHIR API and the JSON API."""

from __future__ import annotations

from django.http import HttpRequest

from careline.api.keys import ApiKeyError, authenticate_key
from careline.api.models import ApiKey


def api_key_from_request(request: HttpRequest) -> ApiKey:
    """The key in `Authorization: Bearer …`, or ApiKeyError saying what is wrong."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiKeyError(
            "Authentication required: send 'Authorization: Bearer <API key>' "
            "(create one with `careline apikey create NAME --organization ORG`)."
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiKeyError("The Authorization header must be 'Bearer <API key>'.")
    return authenticate_key(token)
