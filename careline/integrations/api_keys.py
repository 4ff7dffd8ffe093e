"""Issuing, revoking and checking API keys, and reading one from a request.

A key reads `cl_<prefix>_<secret>`: the prefix finds the row, the 32-byte random secret is
checked against its SHA-256. A fast hash is enough because the secret is random and long;
a password hasher's deliberate slowness would only slow every API call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from careline.clinics.directory import add_organization, organization_named
from careline.clinics.models import Organization
from careline.integrations.models import ApiKey, validate_identifier_system

KEY_PATTERN = re.compile(r"^cl_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
# Recording every use would turn each read into a write; minute precision is enough.
LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiKeyError(Exception):
    """The request's credentials do not identify an active key; the message says why."""


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_api_key(
    *,
    organization_slug: str,
    name: str,
    create_organization: bool = False,
    identifier_system: str = "",
) -> IssuedKey:
    """Create a key for the organization. An unknown slug is refused naming the known ones
    (a typo must not become a new, empty organization) unless `create_organization`.
    `identifier_system` is the system of patient identifiers its client sends without one."""
    slug = organization_slug.strip()
    if not name.strip():
        raise ValueError("An API key needs a name saying who uses it.")
    identifier_system = identifier_system.strip()
    if identifier_system:
        try:
            validate_identifier_system(identifier_system)
        except ValidationError as exc:
            raise ValueError(f"--identifier-system: {' '.join(exc.messages)}") from exc
    with transaction.atomic():
        if create_organization and not Organization.objects.filter(slug=slug).exists():
            organization = add_organization(slug, name=slug)
        else:
            organization = organization_named(slug)
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        api_key = ApiKey.objects.create(
            organization=organization,
            name=name.strip(),
            prefix=prefix,
            secret_hash=_hash(secret),
            identifier_system=identifier_system,
        )
    return IssuedKey(api_key=api_key, plaintext=f"cl_{prefix}_{secret}")


def revoke_api_key(prefix_or_key: str) -> ApiKey:
    """Revoke by the key's prefix (as listed) or by the whole key; raises ApiKey.DoesNotExist."""
    match = KEY_PATTERN.match(prefix_or_key.strip())
    prefix = match["prefix"] if match else prefix_or_key.strip()
    api_key = ApiKey.objects.get(prefix=prefix)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def authenticate_key(plaintext: str) -> ApiKey:
    """The active key for this plaintext, or ApiKeyError with a message for the caller."""
    match = KEY_PATTERN.match(plaintext.strip())
    if not match:
        raise ApiKeyError("The bearer token is not a Careline API key (cl_…).")
    api_key = ApiKey.objects.select_related("organization").filter(prefix=match["prefix"]).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _hash(match["secret"])):
        raise ApiKeyError("The API key is not valid.")
    if api_key.revoked_at is not None:
        raise ApiKeyError("The API key has been revoked.")
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_GRANULARITY:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


# Bearer authentication shared by the FHIR API and the JSON API.
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
