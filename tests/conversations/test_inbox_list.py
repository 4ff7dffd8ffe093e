"""The inbox list as the front desk works it: last-message preview, unread counts and the
response-time clock per queue, and search by name, phone or text - each scoped to the
practices the person works at."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careline.audit.models import AuditEvent
from careline.clinics.models import StaffRole
from careline.conversations.models import Conversation, InboundMessage

from .conftest import post_sms

OTHER_ORG_NUMBER = "+15125550300"


def _desk(build, org, practice, name="desk"):
    user = build.staff(org, StaffRole.FRONT_DESK, practices=[practice], username=name)
    client = Client()
    client.force_login(user)
    return user, client


def _text_to(client, number: str, phone: str, body: str) -> InboundMessage:
    return post_sms(client, number, phone, body)


def _counts(page) -> dict[str, tuple[int, int]]:
    return {q.queue: (q.conversations, q.unread) for q in page.context["queue_counts"]}


def test_rows_show_the_last_text_and_counts_are_per_queue_for_my_practice(build, twoway):
    rosa = twoway.patient(given_name="Rosa", family_name="Vega")
    twoway.text(rosa.mobile_phone, "Can you send a refill of my inhaler?")
    twoway.text(rosa.mobile_phone, "also the refill for my albuterol please")
    twoway.text(twoway.patient().mobile_phone, "Why is my bill $80?")
    # Same organization, another practice: its texts are not the desk's to count.
    elm = build.practice(twoway.org, name="Elm Clinic")
    elm_patient = build.patient(twoway.org, home_practice=elm, mobile_phone="+17375559001")
    twoway.text(elm_patient.mobile_phone, "My bill is wrong, who do I call about billing?")
    _, client = _desk(build, twoway.org, twoway.practice)

    page = client.get(reverse("conversations:inbox"))
    body = page.content.decode()
    assert "also the refill for my albuterol please" in body  # the newest text is the preview
    assert "Can you send a refill of my inhaler?" not in body
    counts = _counts(page)
    assert counts["refills"] == (1, 2)
    assert counts["billing"] == (1, 1)  # Elm's billing text is not counted
    assert "2 unread" in body


def test_search_by_name_phone_and_text_stays_in_my_practices(build, twoway):
    rosa = twoway.patient(given_name="Rosa", family_name="Vega")
    rosa_thread = twoway.text(rosa.mobile_phone, "Do you take Aetna?").conversation
    other = twoway.patient(given_name="Marco", family_name="Diaz")
    other_thread = twoway.text(other.mobile_phone, "Where do I park for the visit?").conversation
    elm = build.practice(twoway.org, name="Elm Clinic")
    elm_rosa = build.patient(
        twoway.org, home_practice=elm, given_name="Rosa", mobile_phone="+17375559002"
    )
    twoway.text(elm_rosa.mobile_phone, "Do you take Aetna at Elm?")
    # Another organization's Rosa, texting its own number.
    other_org = build.organization(name="Far Away Health", default_sender_number=OTHER_ORG_NUMBER)
    far = build.practice(other_org, name="Far Clinic")
    far_rosa = build.patient(
        other_org, home_practice=far, given_name="Rosa", mobile_phone="+17375559003"
    )
    far_thread = _text_to(
        twoway.client, OTHER_ORG_NUMBER, far_rosa.mobile_phone, "Do you take Aetna?"
    ).conversation
    assert far_thread is not None
    _, client = _desk(build, twoway.org, twoway.practice)

    def found(q: str) -> set[int]:
        page = client.get(reverse("conversations:inbox"), {"q": q})
        assert page.status_code == 200
        return {c.id for c in page.context["conversations"]}

    assert found("rosa") == {rosa_thread.id}
    assert found("Rosa Vega") == {rosa_thread.id}
    assert found("aetna") == {rosa_thread.id}
    assert found("park") == {other_thread.id}
    digits = rosa.mobile_phone[-10:]
    spaced = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    assert found(spaced) == {rosa_thread.id}
    # A staff reply's text is searchable too.
    client.post(
        reverse("conversations:reply", args=[other_thread.id]), {"body": "Use the blue garage."}
    )
    assert found("blue garage") == {other_thread.id}
    assert found("nobody-says-this") == set()


def test_search_by_name_is_recorded_as_a_patient_lookup(build, twoway):
    twoway.text(twoway.patient(given_name="Rosa").mobile_phone, "hello?")
    user, client = _desk(build, twoway.org, twoway.practice)
    client.get(reverse("conversations:inbox"), {"q": "rosa"})
    event = AuditEvent.objects.get(user=user, what="inbox search")
    assert event.patient_id is None
    assert "rosa" not in event.what.lower()
    # The list's 5-second refresh of the same search is not another look-up.
    client.get(reverse("conversations:inbox"), {"q": "rosa"}, HTTP_HX_REQUEST="true")
    assert AuditEvent.objects.filter(user=user, what="inbox search").count() == 1


def test_too_long_search_is_a_clear_400(build, twoway):
    _, client = _desk(build, twoway.org, twoway.practice)
    response = client.get(reverse("conversations:inbox"), {"q": "x" * 101})
    assert response.status_code == 400
    assert "q:" in response.content.decode()


def test_response_clock_turns_red_past_the_queue_sla(build, twoway):
    clinical = twoway.text(
        twoway.patient().mobile_phone, "My rash is worse, should I see the doctor?"
    ).conversation
    refill = twoway.text(twoway.patient().mobile_phone, "Refill my metformin please").conversation
    _, client = _desk(build, twoway.org, twoway.practice)
    page = client.get(reverse("conversations:inbox"))
    assert not any(row.late for row in page.context["conversations"])
    assert "over SLA" not in page.content.decode()

    # Twenty minutes pass: past the clinical queue's 15 minutes, within refills' 2 hours.
    InboundMessage.objects.filter(conversation__in=[clinical, refill]).update(
        received_at=timezone.now() - timedelta(minutes=20)
    )
    page = client.get(reverse("conversations:inbox"))
    late = {row.id: row.late for row in page.context["conversations"]}
    assert dict(Conversation.objects.values_list("id", "queue")) == {
        clinical.id: "clinical",
        refill.id: "refills",
    }
    assert late == {clinical.id: True, refill.id: False}
    assert {q.queue for q in page.context["queue_counts"] if q.overdue} == {"clinical"}
    assert "over SLA" in page.content.decode()

    # Answering stops the clock.
    client.post(reverse("conversations:reply", args=[clinical.id]), {"body": "Call us at 9."})
    page = client.get(reverse("conversations:inbox"))
    assert not any(q.overdue for q in page.context["queue_counts"])
