"""Issue 20: canned replies are kept on the settings pages, in English and Spanish, for one
practice (its managers) or every practice of the organization (its admins only), through
one writer. Tried as each role, from the outside."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.conversations.models import CannedReply
from careline.patients.models import Language

URL = "messaging_settings:canned_replies"


def _login(build, org, role, practices, name):
    user = build.staff(org, role, practices=practices, username=name)
    client = Client()
    client.force_login(user)
    return client


def _post(client, where: str, language: str, title: str, body: str, reply=None):
    url = reverse("messaging_settings:canned_reply", args=[reply.id]) if reply else reverse(URL)
    return client.post(url, {"practice": where, "language": language, "title": title, "body": body})


def test_an_admin_sets_organization_wide_replies_in_english_and_spanish(build, twoway):
    admin = _login(build, twoway.org, StaffRole.ORGANIZATION_ADMIN, [], "admin")
    org = f"org:{twoway.org.id}"
    assert (
        _post(admin, org, "en", "Hours", "Hi {first_name}, {practice} opens at 8.").status_code
        == 302
    )
    assert (
        _post(admin, org, "es", "Horario", "Hola {first_name}, abrimos a las 8.").status_code == 302
    )
    assert set(CannedReply.objects.values_list("practice_id", "language", "title")) == {
        (None, "en", "Hours"),
        (None, "es", "Horario"),
    }
    # Every practice's desk is offered them, in the patient's language.
    elm = build.practice(twoway.org, name="Elm Clinic")
    ana = build.patient(
        twoway.org,
        home_practice=elm,
        mobile_phone="+17375559301",
        given_name="Ana",
        preferred_language=Language.SPANISH,
    )
    bob = twoway.patient(given_name="Bob")
    es = twoway.text(ana.mobile_phone, "¿A qué hora abren?").conversation
    en = twoway.text(bob.mobile_phone, "When do you open?").conversation
    elm_desk = _login(build, twoway.org, StaffRole.FRONT_DESK, [elm], "elmdesk")
    oak_desk = _login(build, twoway.org, StaffRole.FRONT_DESK, [twoway.practice], "oakdesk")
    assert elm_desk.get(reverse("conversations:detail", args=[es.id])).context[
        "canned_replies"
    ] == [("Horario", "Hola Ana, abrimos a las 8.")]
    assert oak_desk.get(reverse("conversations:detail", args=[en.id])).context[
        "canned_replies"
    ] == [("Hours", "Hi Bob, Oak Clinic opens at 8.")]

    # The admin changes one in place (text and language), then deletes it.
    hours = CannedReply.objects.get(title="Hours")
    page = admin.get(reverse("messaging_settings:canned_reply", args=[hours.id]))
    assert page.status_code == 200 and "opens at 8" in page.content.decode()
    assert _post(admin, org, "en", "Hours", "We open at 7:30.", reply=hours).status_code == 302
    hours.refresh_from_db()
    assert (hours.body, hours.practice_id) == ("We open at 7:30.", None)
    delete = reverse("messaging_settings:delete_canned_reply", args=[hours.id])
    assert admin.post(delete).status_code == 302
    assert not CannedReply.objects.filter(pk=hours.id).exists()


def test_a_manager_keeps_own_practices_replies_but_not_organization_wide_ones(build, twoway):
    org_wide = CannedReply.objects.create(
        organization=twoway.org, title="Hours", body="We open at 8.", language="en"
    )
    elm = build.practice(twoway.org, name="Elm Clinic")
    at_elm = CannedReply.objects.create(
        organization=twoway.org, practice=elm, title="Elm parking", body="Lot B.", language="en"
    )
    manager = _login(build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice], "mgr")
    page = manager.get(reverse(URL))
    assert page.status_code == 200
    text = page.content.decode()
    # Shown (the desk uses it at Oak too), not changeable; Elm's is not the manager's.
    assert "We open at 8." in text and "Organization admins change it" in text
    assert "Lot B." not in text
    assert f"org:{twoway.org.id}" not in text

    refused = _post(manager, f"org:{twoway.org.id}", "en", "Everyone", "Hi all")
    assert refused.status_code == 403 and "organization admins" in refused.content.decode()
    edit = reverse("messaging_settings:canned_reply", args=[org_wide.id])
    assert manager.get(edit).status_code == 403
    assert (
        _post(manager, str(twoway.practice.id), "en", "Mine", "x", reply=org_wide).status_code
        == 403
    )
    delete = reverse("messaging_settings:delete_canned_reply", args=[org_wide.id])
    assert manager.post(delete).status_code == 403
    other = reverse("messaging_settings:canned_reply", args=[at_elm.id])
    assert manager.get(other).status_code == 404
    assert (
        manager.post(
            reverse("messaging_settings:delete_canned_reply", args=[at_elm.id])
        ).status_code
        == 404
    )
    org_wide.refresh_from_db()
    assert (org_wide.body, org_wide.practice_id) == ("We open at 8.", None)
    assert CannedReply.objects.filter(pk=at_elm.id).exists()
    assert not CannedReply.objects.filter(title__in=["Everyone", "Mine"]).exists()

    # Their own practice's replies they add, change (to Spanish) and delete.
    assert (
        _post(manager, str(twoway.practice.id), "en", "Parking", "Blue garage.").status_code == 302
    )
    mine = CannedReply.objects.get(title="Parking")
    changed = _post(
        manager, str(twoway.practice.id), "es", "Estacionamiento", "Garaje azul.", reply=mine
    )
    assert changed.status_code == 302
    mine.refresh_from_db()
    assert (mine.language, mine.title, mine.practice_id) == (
        "es",
        "Estacionamiento",
        twoway.practice.id,
    )
    # ...but cannot move one to a practice that is not theirs.
    moved = _post(manager, str(elm.id), "es", "Estacionamiento", "Garaje azul.", reply=mine)
    assert moved.status_code == 422 and "practice:" in moved.content.decode()
    mine.refresh_from_db()
    assert mine.practice_id == twoway.practice.id


def test_the_front_desk_and_strangers_cannot_keep_canned_replies(build, twoway):
    reply = CannedReply.objects.create(
        organization=twoway.org, practice=twoway.practice, title="T", body="B", language="en"
    )
    desk = _login(build, twoway.org, StaffRole.FRONT_DESK, [twoway.practice], "desk")
    assert desk.get(reverse(URL)).status_code == 403
    assert _post(desk, str(twoway.practice.id), "en", "X", "Y").status_code == 403
    stranger_org = build.organization()
    stranger = _login(build, stranger_org, StaffRole.ORGANIZATION_ADMIN, [], "stranger")
    assert (
        stranger.get(reverse("messaging_settings:canned_reply", args=[reply.id])).status_code == 404
    )
    assert _post(stranger, f"org:{twoway.org.id}", "en", "X", "Y").status_code == 422
    assert _post(stranger, str(twoway.practice.id), "en", "X", "Y").status_code == 422
    assert list(CannedReply.objects.values_list("title", flat=True)) == ["T"]
