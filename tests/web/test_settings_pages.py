"""Managers' settings: template live preview with segment count, cadence, practice numbers."""

from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.messaging.models import MessageTemplate, ReminderRule


def _manager(build, client, role=StaffRole.PRACTICE_MANAGER):
    org = build.organization()
    practice = build.practice(org, name="Oak Clinic", time_zone="America/Chicago")
    user = build.staff(org, role, practices=[practice])
    client.force_login(user)
    return org, practice, user


def test_live_preview_renders_sample_and_counts_segments(client, build):
    org, practice, _ = _manager(build, client)
    url = reverse("messaging_settings:new_template")
    data = {
        "practice": practice.id,
        "kind": "reminder",
        "language": "en",
        "active": "on",
        "body": "Hi {first_name}, see you {date} at {time} at {practice}. Reply C to confirm.",
    }
    response = client.post(url, {**data, "action": "preview"}, HTTP_HX_REQUEST="true")
    preview = response.context["preview"]
    assert preview["text"].startswith("Hi Alexandra, see you ")
    assert "at 2:40 PM at Oak Clinic" in preview["text"]
    assert preview["count"].encoding == "GSM-7" and preview["count"].segments == 1
    with_emoji = client.post(
        url, {**data, "body": data["body"] + " 👍", "action": "preview"}, HTTP_HX_REQUEST="true"
    )
    assert with_emoji.context["preview"]["count"].encoding == "UCS-2"
    long_text = client.post(
        url, {**data, "body": "x" * 170, "action": "preview"}, HTTP_HX_REQUEST="true"
    )
    assert long_text.context["preview"]["count"].segments == 2
    assert "2 segments" in long_text.content.decode()
    bad = client.post(
        url, {**data, "body": "Hi {diagnosis}", "action": "preview"}, HTTP_HX_REQUEST="true"
    )
    assert "Unknown template variables: {diagnosis}" in bad.content.decode()
    assert not MessageTemplate.objects.filter(organization=org).exists()


def test_saving_a_template_and_refusing_a_bad_one(client, build):
    org, practice, _ = _manager(build, client)
    url = reverse("messaging_settings:new_template")
    good = {
        "practice": practice.id,
        "kind": "reminder",
        "language": "es",
        "active": "on",
        "body": "Hola {first_name}, su cita es el {date}.",
        "action": "save",
    }
    assert client.post(url, good).status_code == 302
    saved = MessageTemplate.objects.get(organization=org)
    assert saved.practice == practice and saved.language == "es"
    response = client.post(url, {**good, "body": "{patient.ssn}"})
    assert response.status_code == 200
    assert MessageTemplate.objects.filter(organization=org).count() == 1


def test_org_admin_sets_the_cadence_in_hours(client, build):
    org, _, _ = _manager(build, client, role=StaffRole.ORGANIZATION_ADMIN)
    url = reverse("messaging_settings:cadence", args=[org.id])
    client.post(url, {"hours_before": "72, 24, 2", "stop_when_confirmed": "on"})
    rule = ReminderRule.objects.get(organization=org, practice=None, appointment_type=None)
    assert rule.offsets_minutes == [4320, 1440, 120] and rule.stop_when_confirmed
    response = client.post(url, {"hours_before": "soon"})
    assert "Write numbers of hours" in response.content.decode()


def test_practice_manager_cannot_change_organization_cadence(client, build):
    org, _, _ = _manager(build, client)
    assert client.get(reverse("messaging_settings:cadence", args=[org.id])).status_code == 403


def test_front_desk_has_no_settings(client, build):
    org = build.organization()
    practice = build.practice(org)
    client.force_login(build.staff(org, StaffRole.FRONT_DESK, practices=[practice]))
    assert client.get(reverse("messaging_settings:overview")).status_code == 403
    assert client.get(reverse("messaging_settings:practice", args=[practice.id])).status_code == 403


def test_sender_number_is_normalized_or_refused(client, build):
    org, practice, _ = _manager(build, client)
    url = reverse("messaging_settings:practice", args=[practice.id])
    client.post(
        url, {"phone": "(512) 555-0199", "sender_number": "512.555.0142", "address": "1 Oak St"}
    )
    practice.refresh_from_db()
    assert practice.sender_number == "+15125550142" and practice.phone == "+15125550199"
    response = client.post(url, {"phone": "", "sender_number": "12", "address": ""})
    assert "wrong number of digits" in response.content.decode()


def test_careline_defaults_are_listed_from_the_catalog_and_customized_as_a_copy(client, build):
    org, practice, _ = _manager(build, client, role=StaffRole.ORGANIZATION_ADMIN)
    page = client.get(reverse("messaging_settings:overview")).content.decode()
    assert page.count("Careline default") == 8
    assert "le recordamos su cita" in page
    url = reverse("messaging_settings:new_template")
    form = client.get(url, {"kind": "reminder", "language": "es"}).context["form"]
    assert form.instance.body.startswith("{first_name}: le recordamos su cita")
    assert form.instance.pk is None
