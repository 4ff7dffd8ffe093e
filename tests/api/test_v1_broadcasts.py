"""Broadcasts over the API: preview (dry run), send, list and delivery report."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from careline.api.v1.service_users import service_username
from careline.broadcasts.models import Broadcast
from careline.broadcasts.sending import Audience, send_broadcast
from careline.integrations.models import ApiKey
from careline.messaging.models import MessageState, OutboundMessage
from careline.patients.models import PhoneConsent
from tests.api.conftest import error


@pytest.fixture
def patients(build, org, practice):
    """Four patients of Oak Clinic: two reachable (one Spanish), one opted out, one without
    a mobile; plus a family member sharing the first one's number."""
    first = build.patient(
        org, home_practice=practice, given_name="Ana", mobile_phone="+15125551001"
    )
    build.patient(org, home_practice=practice, given_name="Ben", mobile_phone="+15125551001")
    build.patient(
        org,
        home_practice=practice,
        given_name="Carla",
        mobile_phone="+15125551002",
        preferred_language="es",
    )
    out = build.patient(org, home_practice=practice, mobile_phone="+15125551003")
    PhoneConsent.objects.create(
        organization=org,
        phone=out.mobile_phone,
        opted_out=True,
        source="patient_text",
        changed_at=timezone.now(),
    )
    build.patient(org, home_practice=practice, mobile_phone="")
    return first


def _broadcast(practice, **overrides):
    return {
        "name": "Closed Friday",
        "body_en": "Hi {first_name}, {practice} is closed Friday.",
        "body_es": "Hola {first_name}, {practice} cierra el viernes.",
        "audience": {"practice_ids": [practice.pk]},
    } | overrides


def test_dry_run_counts_reach_and_exclusions_and_stores_nothing(api, practice, patients):
    response = api.post("broadcasts", _broadcast(practice), dry_run="true")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["reach"] == 2
    assert body["excluded"] == {
        "opted_out": 1,
        "no_mobile_number": 1,
        "shares_a_number_with_another_recipient": 1,
    }
    assert body["by_language"] == {"en": 1, "es": 1}
    assert body["segments"]["en"]["encoding"] == "GSM-7"
    assert not Broadcast.objects.exists() and not OutboundMessage.objects.exists()


def _worker() -> None:
    """One round of `careline worker`: it queues the texts of recorded broadcasts."""
    call_command("worker", "--once", stdout=io.StringIO())


def test_send_queues_one_text_per_number_and_reports_delivery(api, org, practice, patients):
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    response = api.post("broadcasts", _broadcast(practice, send_at=later))
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"http://testserver/api/v1/broadcasts/{body['id']}"
    assert body["recipients"] == 2 and body["practice_ids"] == [practice.pk]
    assert body["created_by"].startswith("api-epic-interface-")
    # Recorded by the request; the worker queues its texts.
    assert body["state"] == "queued" and not OutboundMessage.objects.exists()
    _worker()
    body = api.get(f"broadcasts/{body['id']}").json()
    assert body["state"] == "sending"
    assert body["delivery"]["by_state"]["scheduled"] == 2
    texts = OutboundMessage.objects.filter(broadcast_id=body["id"]).order_by("to_address")
    assert [t.body for t in texts] == [
        "Hi Ana, Oak Clinic is closed Friday.",
        "Hola Carla, Oak Clinic cierra el viernes.",
    ]
    OutboundMessage.objects.filter(pk=texts[0].pk).update(
        state=MessageState.SUPPRESSED, reason="quiet_hours"
    )
    report = api.get(f"broadcasts/{body['id']}").json()["delivery"]
    assert report["by_state"]["scheduled"] == 1 and report["by_state"]["suppressed"] == 1
    assert report["suppressed_by_reason"] == {"quiet_hours": 1}


def test_list_is_newest_first_paged_and_scoped(build, api, practice, patients):
    ids = [
        api.post("broadcasts", _broadcast(practice, name=f"B{i}")).json()["id"] for i in range(3)
    ]
    elsewhere = build.practice()
    send_broadcast(
        organization_id=elsewhere.organization_id,
        audience=Audience(practice_ids=(elsewhere.pk,)),
        name="Not ours",
        body_en="x",
    )
    first = api.get("broadcasts", limit=2).json()
    second = api.get("broadcasts", query=first["next"].split("?", 1)[1]).json()
    assert [b["id"] for b in first["data"] + second["data"]] == ids[::-1]
    assert second["next"] is None


def test_send_at_in_the_future_is_scheduled_then(api, practice, patients):
    when = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = api.post("broadcasts", _broadcast(practice, send_at=when.isoformat()))
    assert response.status_code == 201, response.content
    _worker()
    assert {t.due_at for t in OutboundMessage.objects.all()} == {when}


@pytest.mark.parametrize(
    "overrides,field,message",
    [
        ({"name": ""}, "name", "must not be blank"),
        ({"body_en": "Hi {name}"}, None, "Unknown variable {name}"),
        ({"audience": {"practice_ids": []}}, "audience.practice_ids", "at least one"),
        ({"audience": {}}, "audience.practice_ids", "is required"),
        ({"audience": None}, "audience", "must be an object"),
        ({"audience": {"practice_ids": [True]}}, "audience.practice_ids", "array of ids"),
        ({"audience": {"practice_ids": [2**70]}}, "audience.practice_ids", "array of ids"),
        ({"send_at": "2026-01-01T09:00:00"}, "send_at", "with its offset"),
        ({"send_at": "2020-01-01T09:00:00+00:00"}, None, "in the past"),
        ({"colour": "red"}, "colour", "is not a field here"),
    ],
)
def test_invalid_broadcasts_are_422_naming_the_field(api, practice, overrides, field, message):
    response = api.post("broadcasts", _broadcast(practice, **overrides))
    assert response.status_code == 422, response.content
    assert message in error(response)["message"]
    if field:
        assert field in error(response)["fields"]
    assert not Broadcast.objects.exists()


def test_audience_dates_and_language_are_checked(api, practice):
    audience = {
        "practice_ids": [practice.pk],
        "appointments_from": "2026-05-02",
        "appointments_to": "2026-05-01",
        "language": "fr",
        "seen_since": "20260101",
    }
    response = api.post("broadcasts", _broadcast(practice, audience=audience), dry_run="true")
    assert response.status_code == 422
    assert set(error(response)["fields"]) == {
        "audience.appointments_to",
        "audience.language",
        "audience.seen_since",
    }


def test_another_organizations_practices_providers_and_types_cannot_be_targeted(
    build, api, practice
):
    foreign = build.practice()
    provider = build.provider(foreign)
    kind = build.appointment_type(foreign.organization)
    audience = {
        "practice_ids": [practice.pk, foreign.pk],
        "provider_ids": [provider.pk],
        "appointment_type_ids": [kind.pk],
    }
    for dry_run in ("true", "false"):
        response = api.post("broadcasts", _broadcast(practice, audience=audience), dry_run=dry_run)
        assert response.status_code == 422
        assert error(response)["fields"] == {
            "audience.practice_ids": [f"unknown id(s): {foreign.pk}"],
            "audience.provider_ids": [f"unknown id(s): {provider.pk}"],
            "audience.appointment_type_ids": [f"unknown id(s): {kind.pk}"],
        }
    assert not Broadcast.objects.exists()


def test_dry_run_must_be_a_boolean(api, practice):
    response = api.post("broadcasts", _broadcast(practice), dry_run="maybe")
    assert response.status_code == 400
    assert "'dry_run' must be true or false" in error(response)["message"]


def test_a_deactivated_service_user_may_preview_but_not_send(org, api, practice, patients):
    key = ApiKey.objects.get(organization=org)
    get_user_model().objects.create(username=service_username(key), is_active=False)
    assert api.post("broadcasts", _broadcast(practice), dry_run="true").status_code == 200
    response = api.post("broadcasts", _broadcast(practice))
    assert response.status_code == 403
    assert not Broadcast.objects.exists()
