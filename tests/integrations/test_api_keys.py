from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from careline.clinics.models import Organization
from careline.integrations.api_keys import ApiKeyError, authenticate_key, issue_api_key
from careline.integrations.models import ApiKey


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command("apikey", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_create_makes_the_organization_when_asked_and_prints_the_key_once_on_its_last_line():
    lines = run(
        "create", "Epic interface", "--organization", "valley-health", "--create-organization"
    )
    key = lines[-1]
    assert key.startswith("cl_") and " " not in key
    assert key not in "\n".join(lines[:-1])
    org = Organization.objects.get(slug="valley-health")
    stored = ApiKey.objects.get(organization=org)
    assert stored.name == "Epic interface"
    # Only a hash is kept: the secret appears nowhere in the row.
    secret = key.split("_", 2)[2]
    assert secret not in stored.secret_hash and stored.secret_hash != key
    assert authenticate_key(key).organization == org


@pytest.mark.django_db
def test_create_reuses_an_existing_organization(build):
    org = build.organization(slug="lakeside")
    run("create", "Engine", "--organization", "lakeside")
    run("create", "App", "--organization", "lakeside")
    assert Organization.objects.filter(slug="lakeside").count() == 1
    assert ApiKey.objects.filter(organization=org).count() == 2


@pytest.mark.django_db
def test_create_refuses_a_slug_that_is_not_one():
    with pytest.raises(CommandError, match="not a valid organization slug"):
        run("create", "X", "--organization", "Valley Health!", "--create-organization")
    assert not Organization.objects.exists()


@pytest.mark.django_db
def test_a_mistyped_organization_is_refused_naming_the_known_ones(build):
    build.organization(slug="valley-health")
    build.organization(slug="lakeside")
    with pytest.raises(CommandError) as refused:
        run("create", "Epic interface", "--organization", "valley-heath")
    message = str(refused.value)
    assert "valley-heath" in message
    assert "Did you mean 'valley-health'?" in message
    assert "lakeside" in message and "valley-health" in message
    assert not Organization.objects.filter(slug="valley-heath").exists()
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_revoked_wrong_and_malformed_keys_are_refused_with_reasons(build):
    build.organization(slug="acme")
    issued = issue_api_key(organization_slug="acme", name="feed")
    other = issue_api_key(organization_slug="acme", name="other")
    prefix = issued.api_key.prefix
    # Right prefix, wrong secret.
    forged = f"cl_{prefix}_{other.plaintext.split('_', 2)[2]}"
    with pytest.raises(ApiKeyError, match="not valid"):
        authenticate_key(forged)
    with pytest.raises(ApiKeyError, match="not a Careline API key"):
        authenticate_key("hunter2")
    assert run("revoke", prefix)[-1].startswith("Revoked")
    with pytest.raises(ApiKeyError, match="revoked"):
        authenticate_key(issued.plaintext)
    # The other key of the organization still works.
    assert authenticate_key(other.plaintext).pk == other.api_key.pk
    with pytest.raises(CommandError, match="No API key"):
        run("revoke", "000000000000")


@pytest.mark.django_db
def test_use_is_recorded_and_list_never_shows_secrets(build):
    build.organization(slug="acme")
    issued = issue_api_key(organization_slug="acme", name="feed")
    assert issued.api_key.last_used_at is None
    authenticate_key(issued.plaintext)
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None
    listing = "\n".join(run("list", "--organization", "acme"))
    assert issued.api_key.prefix in listing and "active" in listing
    assert issued.plaintext.split("_", 2)[2] not in listing
