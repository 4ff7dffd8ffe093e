"""Issue 20: the response-time limit of each inbox queue is set per organization, and a
practice may set its own (which wins), on the settings pages and through the REST API; the
inbox clock turns red by the configured limit. Tried as each role, from the outside."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.conversations.models import InboundMessage, QueueResponseLimit
from careline.integrations.api_keys import issue_api_key
from tests.api.conftest import Api, error


def _login(build, org, role, practices, name):
    user = build.staff(org, role, practices=practices, username=name)
    client = Client()
    client.force_login(user)
    return client


def _waited(conversation, minutes: int) -> None:
    InboundMessage.objects.filter(conversation=conversation).update(
        received_at=timezone.now() - timedelta(minutes=minutes)
    )


def _late(client) -> dict[int, bool]:
    page = client.get(reverse("conversations:inbox"))
    assert page.status_code == 200
    return {row.id: row.late for row in page.context["conversations"]}


def _overdue_queues(client) -> set[str]:
    page = client.get(reverse("conversations:inbox"))
    return {q.queue for q in page.context["queue_counts"] if q.overdue}


def test_a_practice_limit_set_on_the_settings_page_turns_the_clock_red(build, twoway):
    billing = twoway.text(twoway.patient().mobile_phone, "Why is my bill $80?").conversation
    assert billing.queue == "billing"
    desk = _login(build, twoway.org, StaffRole.FRONT_DESK, [twoway.practice], "desk")
    _waited(billing, 45)
    # Careline's default for billing is 4 hours: 45 minutes is not late.
    assert _late(desk) == {billing.id: False}
    assert _overdue_queues(desk) == set()

    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice], "mgr")
    url = reverse("messaging_settings:practice_response_limits", args=[twoway.practice.id])
    page = manager.get(url)
    assert page.status_code == 200 and "Billing" in page.content.decode()
    response = manager.post(url, {"billing": "30", "clinical": ""})
    assert response.status_code == 302
    assert _late(desk) == {billing.id: True}
    assert _overdue_queues(desk) == {"billing"}
    assert "over SLA" in desk.get(reverse("conversations:inbox")).content.decode()

    # Blank again: the practice follows the organization (here Careline's default).
    assert manager.post(url, {"billing": ""}).status_code == 302
    assert _late(desk) == {billing.id: False}
    assert not QueueResponseLimit.objects.exists()


def test_the_organization_limit_applies_unless_the_practice_sets_its_own(build, twoway):
    oak_text = twoway.text(twoway.patient().mobile_phone, "Why is my bill $80?").conversation
    elm = build.practice(twoway.org, name="Elm Clinic")
    elm_patient = build.patient(twoway.org, home_practice=elm, mobile_phone="+17375559201")
    elm_text = twoway.text(elm_patient.mobile_phone, "Why is my bill $80?").conversation
    assert (oak_text.practice_id, elm_text.practice_id) == (twoway.practice.id, elm.id)
    _waited(oak_text, 45)
    _waited(elm_text, 45)
    admin = _login(build, twoway.org, StaffRole.ORGANIZATION_ADMIN, [], "admin")
    response = admin.post(
        reverse("messaging_settings:response_limits", args=[twoway.org.id]), {"billing": "40"}
    )
    assert response.status_code == 302
    assert _late(admin) == {oak_text.id: True, elm_text.id: True}

    # Oak's manager gives Oak a whole hour; Elm keeps the organization's 40 minutes.
    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice], "mgr")
    url = reverse("messaging_settings:practice_response_limits", args=[twoway.practice.id])
    assert manager.post(url, {"billing": "60"}).status_code == 302
    assert _late(admin) == {oak_text.id: False, elm_text.id: True}
    page = manager.get(url).content.decode()
    assert "organization&#x27;s limit (40 min)" in page or "organization's limit (40 min)" in page


def test_roles_who_may_change_which_limits(build, twoway):
    elm = build.practice(twoway.org, name="Elm Clinic")
    org_url = reverse("messaging_settings:response_limits", args=[twoway.org.id])
    oak_url = reverse("messaging_settings:practice_response_limits", args=[twoway.practice.id])
    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice], "mgr")
    response = manager.post(org_url, {"clinical": "5"})
    assert response.status_code == 403
    assert "organization admins" in response.content.decode()
    assert manager.get(org_url).status_code == 403
    # Another practice of the organization is not the manager's.
    elm_url = reverse("messaging_settings:practice_response_limits", args=[elm.id])
    assert manager.post(elm_url, {"clinical": "5"}).status_code == 404
    desk = _login(build, twoway.org, StaffRole.FRONT_DESK, [twoway.practice], "desk")
    assert desk.post(oak_url, {"clinical": "5"}).status_code == 403
    assert desk.get(oak_url).status_code == 403
    stranger_org = build.organization()
    stranger = _login(build, stranger_org, StaffRole.ORGANIZATION_ADMIN, [], "stranger")
    assert stranger.post(oak_url, {"clinical": "5"}).status_code == 404
    assert stranger.post(org_url, {"clinical": "5"}).status_code == 403
    assert not QueueResponseLimit.objects.exists()
    # The organization's admin may set every practice's limits too.
    admin = _login(build, twoway.org, StaffRole.ORGANIZATION_ADMIN, [], "admin")
    assert admin.post(elm_url, {"clinical": "5"}).status_code == 302
    assert list(QueueResponseLimit.objects.values_list("practice_id", "queue", "minutes")) == [
        (elm.id, "clinical", 5)
    ]


@pytest.mark.parametrize(
    "value", ["0", "-5", "abc", "1.5", "٣", "10081", "99999999999999999999", "5 min"]
)
def test_a_bad_limit_names_the_queue_and_stores_nothing(build, twoway, value):
    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice], "mgr")
    url = reverse("messaging_settings:practice_response_limits", args=[twoway.practice.id])
    response = manager.post(url, {"billing": "20", "clinical": value})
    assert response.status_code == 422
    page = response.content.decode()
    assert 'role="alert"' in page and "minutes" in page
    assert response.context["form"].errors.keys() == {"clinical"}
    assert not QueueResponseLimit.objects.exists()


def test_the_rest_api_reads_and_sets_the_limits(build, twoway):
    api = Api(issue_api_key(organization_slug=twoway.org.slug, name="ops").plaintext)
    limits = {row["queue"]: row for row in api.get("response-limits").json()["limits"]}
    assert limits["clinical"] == {"queue": "clinical", "minutes": 15, "own": None, "inherited": 15}

    saved = api.put("response-limits", {"minutes": {"billing": 40, "clinical": 10}}).json()
    assert saved["practice_id"] is None
    assert {r["queue"]: r["minutes"] for r in saved["limits"]}["billing"] == 40
    body = {"practice_id": twoway.practice.id, "minutes": {"billing": 90}}
    oak = {r["queue"]: r for r in api.put("response-limits", body).json()["limits"]}
    assert oak["billing"] == {"queue": "billing", "minutes": 90, "own": 90, "inherited": 40}
    assert oak["clinical"] == {"queue": "clinical", "minutes": 10, "own": None, "inherited": 10}
    read = api.get("response-limits", practice=twoway.practice.id).json()
    assert {r["queue"]: r["minutes"] for r in read["limits"]}["billing"] == 90

    # The inbox follows: a billing text 60 minutes old is late at no practice of 40 min...
    conversation = twoway.text(twoway.patient().mobile_phone, "Why is my bill $80?").conversation
    _waited(conversation, 60)
    desk = _login(build, twoway.org, StaffRole.FRONT_DESK, [twoway.practice], "desk")
    assert _late(desk) == {conversation.id: False}  # Oak's own 90 minutes win
    api.put("response-limits", {"practice_id": twoway.practice.id, "minutes": {"billing": None}})
    assert _late(desk) == {conversation.id: True}  # back to the organization's 40


@pytest.mark.parametrize(
    "body,field",
    [
        ({"minutes": {"billing": 0}}, "minutes.billing"),
        ({"minutes": {"billing": "30"}}, "minutes.billing"),
        ({"minutes": {"billing": True}}, "minutes.billing"),
        ({"minutes": {"billing": 10081}}, "minutes.billing"),
        ({"minutes": {"lunch": 30}}, "minutes.lunch"),
        ({"minutes": [30]}, "minutes"),
        ({}, "minutes"),
        ({"minutes": {}, "practice_id": "1"}, "practice_id"),
        ({"minutes": {}, "colour": "red"}, "colour"),
    ],
)
def test_the_rest_api_names_the_bad_field_and_stores_nothing(twoway, body, field):
    api = Api(issue_api_key(organization_slug=twoway.org.slug, name="ops").plaintext)
    response = api.put("response-limits", body)
    assert response.status_code == 422, response.content
    assert field in error(response)["fields"]
    assert not QueueResponseLimit.objects.exists()


def test_the_rest_api_never_reaches_another_organizations_practice(build, twoway):
    stranger = Api(issue_api_key(organization_slug=build.organization().slug, name="x").plaintext)
    body = {"practice_id": twoway.practice.id, "minutes": {"billing": 5}}
    response = stranger.put("response-limits", body)
    assert response.status_code == 422 and "practice_id" in error(response)["fields"]
    assert stranger.get("response-limits", practice=twoway.practice.id).status_code == 400
    assert not QueueResponseLimit.objects.exists()
