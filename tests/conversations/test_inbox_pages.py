"""The inbox as the front desk uses it: list, thread, reply, note, assign, close, warnings."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.conversations.models import CannedReply, ConversationState
from careline.messaging.models import MessageKind, OutboundMessage


def _desk(build, twoway, name="desk"):
    user = build.staff(twoway.org, StaffRole.FRONT_DESK, practices=[twoway.practice], username=name)
    client = Client()
    client.force_login(user)
    return user, client


def test_inbox_lists_by_queue_with_unread_and_polls(build, twoway):
    patient = twoway.patient(given_name="Rosa")
    refill = twoway.text(patient.mobile_phone, "Can you send a refill of my inhaler?").conversation
    billing = twoway.text(twoway.patient().mobile_phone, "Why is my bill $80?").conversation
    _, client = _desk(build, twoway)

    page = client.get(reverse("conversations:inbox"))
    assert {c.id for c in page.context["conversations"]} == {refill.id, billing.id}
    assert "1 new" in page.content.decode() and 'hx-trigger="every 5s"' in page.content.decode()
    only_refills = client.get(
        reverse("conversations:inbox"), {"queue": "refills"}, HTTP_HX_REQUEST="true"
    )
    assert [c.id for c in only_refills.context["conversations"]] == [refill.id]
    assert "<html" not in only_refills.content.decode()  # a fragment for HTMX


def test_reply_note_assign_close_from_the_page(build, twoway):
    patient = twoway.patient(given_name="Rosa")
    conversation = twoway.text(patient.mobile_phone, "Do you take Aetna?").conversation
    user, client = _desk(build, twoway)
    CannedReply.objects.create(
        organization=twoway.org,
        title="Insurance",
        body="Hi {first_name}, {practice} takes most plans.",
    )

    detail = client.get(reverse("conversations:detail", args=[conversation.id]))
    assert ("Insurance", "Hi Rosa, Oak Clinic takes most plans.") in detail.context[
        "canned_replies"
    ]
    assert "Do you take Aetna?" in detail.content.decode()
    conversation.refresh_from_db()
    assert conversation.unread_count == 0  # opening it marks it read

    client.post(
        reverse("conversations:reply", args=[conversation.id]), {"body": "Yes, we take Aetna."}
    )
    reply = OutboundMessage.objects.get(kind=MessageKind.REPLY, body="Yes, we take Aetna.")
    assert reply.to_address == patient.mobile_phone
    client.post(
        reverse("conversations:note", args=[conversation.id]), {"body": "Checked the plan list"}
    )
    assert not OutboundMessage.objects.filter(body="Checked the plan list").exists()
    conversation.refresh_from_db()
    assert conversation.state == ConversationState.WAITING
    assert conversation.assigned_to == user

    client.post(reverse("conversations:assign", args=[conversation.id]), {"to": "queue:billing"})
    conversation.refresh_from_db()
    assert conversation.queue == "billing" and conversation.assigned_to is None
    client.post(reverse("conversations:close", args=[conversation.id]))
    conversation.refresh_from_db()
    assert conversation.state == ConversationState.CLOSED
    page = client.get(reverse("conversations:detail", args=[conversation.id]))
    body = page.content.decode()
    assert "Checked the plan list" in body and "Yes, we take Aetna." in body and "Reopen" in body


def test_empty_reply_is_a_message_not_a_crash(build, twoway):
    conversation = twoway.text(twoway.patient().mobile_phone, "hello?").conversation
    _, client = _desk(build, twoway)
    response = client.post(
        reverse("conversations:reply", args=[conversation.id]), {"body": "  "}, follow=True
    )
    assert "Type a reply first." in response.content.decode()


def test_two_staff_on_one_conversation_are_warned(build, twoway):
    conversation = twoway.text(twoway.patient().mobile_phone, "Is the clinic open?").conversation
    _, first = _desk(build, twoway, "alice")
    _, second = _desk(build, twoway, "bob")
    first.get(reverse("conversations:detail", args=[conversation.id]))
    page = second.get(reverse("conversations:detail", args=[conversation.id]))
    assert page.context["others_here"] == ["alice"]
    assert "alice is also answering" in page.content.decode()


def test_other_practice_cannot_open_or_act(build, twoway):
    conversation = twoway.text(twoway.patient().mobile_phone, "billing question").conversation
    other = build.practice(twoway.org, name="Elm Clinic")
    outsider = build.staff(twoway.org, StaffRole.FRONT_DESK, practices=[other])
    client = Client()
    client.force_login(outsider)
    assert client.get(reverse("conversations:detail", args=[conversation.id])).status_code == 404
    assert (
        client.post(
            reverse("conversations:reply", args=[conversation.id]), {"body": "hi"}
        ).status_code
        == 404
    )
    assert not OutboundMessage.objects.filter(body="hi").exists()
    page = client.get(reverse("conversations:inbox"))
    assert conversation.id not in [c.id for c in page.context["conversations"]]
