"""Canned replies per practice and language, set by its managers; and the collision warning
when a colleague is typing a reply in the same conversation."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.conversations.models import CannedReply
from careline.patients.models import Language


def _login(build, org, role, practice, name):
    user = build.staff(org, role, practices=[practice], username=name)
    client = Client()
    client.force_login(user)
    return client


def test_a_manager_sets_canned_replies_per_practice_and_language(build, twoway):
    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, twoway.practice, "mgr")
    url = reverse("messaging_settings:canned_replies")
    for language, title, body in (
        ("en", "Parking", "Hi {first_name}, park in the blue garage at {practice}."),
        ("es", "Estacionamiento", "Hola {first_name}, estacione en el garaje azul."),
    ):
        response = manager.post(
            url,
            {"practice": twoway.practice.id, "language": language, "title": title, "body": body},
        )
        assert response.status_code == 302
    assert set(CannedReply.objects.values_list("practice_id", "language", "title")) == {
        (twoway.practice.id, "en", "Parking"),
        (twoway.practice.id, "es", "Estacionamiento"),
    }

    desk = _login(build, twoway.org, StaffRole.FRONT_DESK, twoway.practice, "desk")
    maria = twoway.patient(given_name="María", preferred_language=Language.SPANISH)
    john = twoway.patient(given_name="John")
    es = twoway.text(maria.mobile_phone, "¿Dónde me estaciono?").conversation
    en = twoway.text(john.mobile_phone, "Where do I park?").conversation
    assert desk.get(reverse("conversations:detail", args=[es.id])).context["canned_replies"] == [
        ("Estacionamiento", "Hola María, estacione en el garaje azul.")
    ]
    assert desk.get(reverse("conversations:detail", args=[en.id])).context["canned_replies"] == [
        ("Parking", "Hi John, park in the blue garage at Oak Clinic.")
    ]

    # Another practice's desk is not offered Oak's replies.
    elm = build.practice(twoway.org, name="Elm Clinic")
    elm_patient = build.patient(twoway.org, home_practice=elm, mobile_phone="+17375559101")
    elm_thread = twoway.text(elm_patient.mobile_phone, "Where do I park?").conversation
    elm_desk = _login(build, twoway.org, StaffRole.FRONT_DESK, elm, "elmdesk")
    page = elm_desk.get(reverse("conversations:detail", args=[elm_thread.id]))
    assert page.context["canned_replies"] == []

    # The front desk may use them but not change them.
    assert url in manager.get(reverse("conversations:inbox")).content.decode()
    assert url not in desk.get(reverse("conversations:inbox")).content.decode()
    assert desk.get(url).status_code == 403
    reply = CannedReply.objects.get(title="Parking")
    delete = reverse("messaging_settings:delete_canned_reply", args=[reply.id])
    assert desk.post(delete).status_code == 403
    assert manager.post(delete).status_code == 302
    assert not CannedReply.objects.filter(title="Parking").exists()


def test_a_bad_canned_reply_names_the_field_and_stores_nothing(build, twoway):
    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, twoway.practice, "mgr")
    url = reverse("messaging_settings:canned_replies")
    cases = [
        ({"title": "", "body": "x", "language": "en"}, "title:"),
        ({"title": "T", "body": "  ", "language": "en"}, "body:"),
        ({"title": "T", "body": "x", "language": "fr"}, "language:"),
        ({"title": "T", "body": "x" * 1601, "language": "en"}, "body:"),
    ]
    for fields, error in cases:
        response = manager.post(url, {"practice": twoway.practice.id, **fields})
        assert response.status_code == 422
        assert error in response.content.decode()
    other_org = build.organization()
    far = build.practice(other_org)
    response = manager.post(url, {"practice": far.id, "title": "T", "body": "x", "language": "en"})
    assert response.status_code == 422 and "practice:" in response.content.decode()
    assert not CannedReply.objects.exists()


def test_colleague_typing_is_shown_as_replying(build, twoway):
    conversation = twoway.text(twoway.patient().mobile_phone, "Is the clinic open?").conversation
    ana = _login(build, twoway.org, StaffRole.FRONT_DESK, twoway.practice, "ana")
    bob = _login(build, twoway.org, StaffRole.FRONT_DESK, twoway.practice, "bob")
    presence = reverse("conversations:presence", args=[conversation.id])
    detail = bob.get(reverse("conversations:detail", args=[conversation.id])).content.decode()
    assert f'hx-get="{presence}"' in detail and 'hx-trigger="every 3s"' in detail
    ana.get(reverse("conversations:detail", args=[conversation.id]))
    assert "ana is also answering" in bob.get(presence).content.decode()
    assert "replying" not in bob.get(presence).content.decode()

    assert ana.post(reverse("conversations:typing", args=[conversation.id])).status_code == 204
    warning = bob.get(presence).content.decode()
    assert "ana is replying right now" in warning
    assert "replying" not in ana.get(presence).content.decode()  # not warned about yourself

    elm = build.practice(twoway.org, name="Elm Clinic")
    outsider = _login(build, twoway.org, StaffRole.FRONT_DESK, elm, "eve")
    assert outsider.get(presence).status_code == 404
    assert outsider.post(reverse("conversations:typing", args=[conversation.id])).status_code == 404
