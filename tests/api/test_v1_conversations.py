"""Conversations over the API: filtered, paged lists; a thread; replies and closing."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.conversations import inbox
from careline.conversations.models import (
    Conversation,
    ConversationReply,
    ConversationState,
    Queue,
)
from careline.integrations.api_keys import issue_api_key
from careline.messaging.models import MessageKind, OutboundMessage
from careline.patients.models import PhoneConsent
from tests.api.conftest import Api, error, make_conversation


def test_list_is_newest_first_and_scoped_to_the_keys_organization(build, api, practice):
    older = make_conversation(practice, phone="+15125550001", minutes_ago=30)
    newer = make_conversation(practice, phone="+15125550002", minutes_ago=5)
    make_conversation(build.practice(), phone="+15125550003")  # another organization
    response = api.get("conversations")
    assert response.status_code == 200
    body = response.json()
    assert [c["id"] for c in body["data"]] == [newer.pk, older.pk]
    assert body["next"] is None
    first = body["data"][0]
    assert first["practice"] == {"id": practice.pk, "name": "Oak Clinic"}
    assert first["phone"] == "+15125550002" and first["unread_count"] == 1


def test_filters_by_state_queue_and_practice(build, org, api, practice):
    other_practice = build.practice(org)
    billing = make_conversation(practice, queue=Queue.BILLING)
    closed = make_conversation(practice, state=ConversationState.CLOSED)
    elsewhere = make_conversation(other_practice)

    def ids(**params):
        response = api.get("conversations", **params)
        assert response.status_code == 200, response.content
        return {c["id"] for c in response.json()["data"]}

    assert ids(queue="billing") == {billing.pk}
    assert ids(state="closed") == {closed.pk}
    assert ids(practice=other_practice.pk) == {elsewhere.pk}
    assert ids(practice=practice.pk, state="open") == {billing.pk}


@pytest.mark.parametrize(
    "params,message",
    [
        ({"state": "snoozed"}, "'state' must be one of open, assigned, waiting, closed"),
        ({"queue": "Billing"}, "'queue' must be one of"),
        ({"practice": "abc"}, "'practice' must be a positive whole number"),
        ({"practice": "999999"}, "No practice 999999 in this organization"),
        ({"limit": "0"}, "'limit' must be a whole number from 1 to 200"),
        ({"limit": "201"}, "'limit' must be a whole number from 1 to 200"),
        ({"cursor": "not-a-cursor"}, "The cursor is not one this API gave out"),
        ({"stat": "open"}, "Unknown query parameter(s): stat"),
    ],
)
def test_bad_filters_are_400_saying_what_is_wrong(api, practice, params, message):
    response = api.get("conversations", **params)
    assert response.status_code == 400
    assert error(response)["code"] == "bad_request"
    assert message in error(response)["message"]


def test_another_organizations_practice_is_not_a_filter(build, api):
    response = api.get("conversations", practice=build.practice().pk)
    assert response.status_code == 400
    assert "No practice" in error(response)["message"]


def test_a_repeated_parameter_is_refused_not_guessed(api):
    response = api.get("conversations", query="state=open&state=closed")
    assert response.status_code == 400
    assert "once" in error(response)["message"]


def test_pages_follow_next_links_without_gaps_or_repeats_even_with_equal_times(api, practice):
    at = timezone.now() - timedelta(hours=1)
    made = [make_conversation(practice, phone=f"+1512555{i:04d}") for i in range(7)]
    # Three share one time: the id breaks the tie, so none is skipped or shown twice.
    Conversation.objects.filter(pk__in=[c.pk for c in made[2:5]]).update(last_patient_message_at=at)
    seen, url, pages = [], None, 0
    response = api.get("conversations", limit=3)
    while True:
        pages += 1
        body = response.json()
        seen += [c["id"] for c in body["data"]]
        url = body["next"]
        if url is None:
            break
        assert url.startswith("http://testserver/api/v1/conversations?") and "limit=3" in url
        response = api.get("conversations", query=url.split("?", 1)[1])
    assert pages == 3
    assert sorted(seen) == sorted(c.pk for c in made) and len(seen) == len(set(seen))
    expected = list(
        Conversation.objects.order_by("-last_patient_message_at", "-id").values_list(
            "id", flat=True
        )
    )
    assert seen == expected


def test_a_conversation_comes_with_its_thread_in_order(api, practice):
    conversation = make_conversation(practice, minutes_ago=20)
    staff = get_user_model().objects.create(username="ana")
    message = OutboundMessage.objects.create(
        organization=practice.organization,
        to_address=conversation.phone,
        body="Yes, that's fine.",
        kind=MessageKind.REPLY,
        due_at=timezone.now(),
        created_at=timezone.now(),
    )
    ConversationReply.objects.create(
        conversation=conversation, message=message, author=staff, created_at=message.created_at
    )
    response = api.get(f"conversations/{conversation.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == conversation.pk and body["older_messages"] is False
    assert [(m["direction"], m["body"], m["author"]) for m in body["messages"]] == [
        ("inbound", "Can I bring my daughter too?", None),
        ("outbound", "Yes, that's fine.", "ana"),
    ]
    assert body["messages"][1]["delivery_state"] == "scheduled"


def test_reply_queues_a_text_as_the_keys_service_user(org, api, practice):
    conversation = make_conversation(practice)
    response = api.post(f"conversations/{conversation.pk}/reply", {"body": "  See you then.  "})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["reply"]["body"] == "See you then."
    assert body["reply"]["author"].startswith("api-epic-interface-")
    assert body["conversation"]["state"] == "waiting"
    assert body["conversation"]["assigned_to"] == body["reply"]["author"]
    text = OutboundMessage.objects.get(pk=body["reply"]["id"])
    # From the number the patient wrote to, to the patient, first in line.
    assert (text.to_address, text.sender, text.kind) == (
        conversation.phone,
        "+15125550100",
        MessageKind.REPLY,
    )
    user = get_user_model().objects.get(username=body["reply"]["author"])
    assert not user.has_usable_password() and not user.memberships.exists()


def test_the_service_user_is_one_per_key_and_sees_nothing_on_its_own(org, api, practice):
    first = make_conversation(practice, phone="+15125550001")
    second = make_conversation(practice, phone="+15125550002")
    a = api.post(f"conversations/{first.pk}/reply", {"body": "Hi"}).json()["reply"]["author"]
    b = api.post(f"conversations/{second.pk}/reply", {"body": "Hi"}).json()["reply"]["author"]
    other_key = Api(issue_api_key(organization_slug=org.slug, name="Portal").plaintext)
    c = other_key.post(f"conversations/{second.pk}/reply", {"body": "Hi"}).json()["reply"]["author"]
    assert a == b and c != a and c.startswith("api-portal-")
    user = get_user_model().objects.get(username=a)
    assert not Conversation.objects.visible_to(user).exists()
    # Nor may staff hand it work: it is no one's colleague.
    with pytest.raises(inbox.InboxError):
        inbox.assign(first, user)


def test_reply_refusals_are_422_with_the_inboxs_reason(org, api, practice):
    conversation = make_conversation(practice)
    url = f"conversations/{conversation.pk}/reply"
    blank = api.post(url, {"body": "   "})
    assert blank.status_code == 422 and "body" in error(blank)["fields"]
    long = api.post(url, {"body": "x" * 1601})
    assert long.status_code == 422 and "at most 1600" in error(long)["message"]
    wrong_type = api.post(url, {"body": 5})
    assert wrong_type.status_code == 422 and "must be a string" in error(wrong_type)["message"]
    extra = api.post(url, {"body": "hi", "to": "+15550000000"})
    assert extra.status_code == 422 and "to" in error(extra)["fields"]
    PhoneConsent.objects.create(
        organization=org, phone=conversation.phone, opted_out=True, source="sms",
        changed_at=timezone.now(),
    )  # fmt: skip
    opted_out = api.post(url, {"body": "hello"})
    assert opted_out.status_code == 422 and "opted out" in error(opted_out)["message"]
    assert not ConversationReply.objects.exists()


@pytest.mark.parametrize(
    "raw,content_type,status",
    [
        ("", "application/json", 400),
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('{"body": NaN}', "application/json", 400),
        ("body=hello", "application/x-www-form-urlencoded", 415),
    ],
)
def test_bodies_that_are_not_json_objects_are_refused(api, practice, raw, content_type, status):
    conversation = make_conversation(practice)
    response = api.client.post(
        f"/api/v1/conversations/{conversation.pk}/reply",
        raw,
        content_type=content_type,
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert response.status_code == status, response.content
    assert response.json()["error"]["message"]


def test_close_closes_and_is_idempotent(api, practice):
    conversation = make_conversation(practice)
    response = api.post(f"conversations/{conversation.pk}/close")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "closed" and response.json()["unread_count"] == 0
    conversation.refresh_from_db()
    assert conversation.state == ConversationState.CLOSED and conversation.closed_at
    closed_at = conversation.closed_at
    assert api.post(f"conversations/{conversation.pk}/close", {}).status_code == 200
    conversation.refresh_from_db()
    assert conversation.closed_at == closed_at
    refused = api.post(f"conversations/{conversation.pk}/close", {"reason": "done"})
    assert refused.status_code == 422


def test_staff_of_the_organization_still_see_api_replies(build, org, api, practice):
    conversation = make_conversation(practice)
    api.post(f"conversations/{conversation.pk}/reply", {"body": "On it."})
    staff = build.staff(org, role=StaffRole.FRONT_DESK, practices=[practice])
    reply = ConversationReply.objects.visible_to(staff).get()
    assert reply.author.username.startswith("api-epic-interface-")


def test_a_deactivated_service_user_may_not_reply_or_close(api, practice):
    conversation = make_conversation(practice)
    author = api.post(f"conversations/{conversation.pk}/reply", {"body": "Hi"}).json()["reply"][
        "author"
    ]
    get_user_model().objects.filter(username=author).update(is_active=False)
    for action, body in (("reply", {"body": "Again"}), ("close", None)):
        response = api.post(f"conversations/{conversation.pk}/{action}", body)
        assert response.status_code == 403, response.content
        assert error(response)["code"] == "forbidden"
        assert "deactivated" in error(response)["message"]
    assert ConversationReply.objects.count() == 1
    # Reading is the key's, not the service user's, and goes on.
    assert api.get(f"conversations/{conversation.pk}").status_code == 200


def test_a_forged_cursor_is_400_even_when_it_decodes(api):
    for payload in ('["0001-01-01T00:00:00+14:00", 1]', '["2026-01-01T00:00:00", 1]', '["x", 1]'):
        cursor = base64.urlsafe_b64encode(payload.encode()).decode()
        response = api.get("conversations", cursor=cursor)
        assert response.status_code == 400, payload


def test_a_body_over_the_upload_limit_is_413(api, practice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    conversation = make_conversation(practice)
    response = api.post(f"conversations/{conversation.pk}/reply", {"body": "x" * 2000})
    assert response.status_code == 413
    assert error(response)["code"] == "too_large"
