"""Issue 18: managers change their own practices' settings; settings that apply to the whole
organization (templates and experiments without a practice, the organization's reminder
cadence and every rule in the admin) are for organization admins. Tried from the outside
as each role."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.clinics.models import StaffMembership, StaffRole
from careline.messaging.models import Experiment, MessageTemplate, ReminderRule

ORG_WIDE_BODY = "Org-wide reminder for {first_name} on {date}."
PRACTICE_BODY = "Practice reminder for {first_name} on {date}."


@pytest.fixture
def org(build):
    organization = build.organization()
    own = build.practice(organization, name="Own Clinic")
    other = build.practice(organization, name="Sister Clinic")
    org_wide = MessageTemplate.objects.create(
        organization=organization, kind="reminder", language="en", body=ORG_WIDE_BODY
    )
    at_own = MessageTemplate.objects.create(
        organization=organization, practice=own, kind="reminder", language="es", body=PRACTICE_BODY
    )
    return {
        "org": organization,
        "own": own,
        "other": other,
        "org_wide": org_wide,
        "at_own": at_own,
        "manager": build.staff(organization, StaffRole.PRACTICE_MANAGER, practices=[own]),
        "admin": build.staff(organization, StaffRole.ORGANIZATION_ADMIN),
    }


def _template_post(practice, body: str) -> dict:
    return {
        "practice": practice.pk if practice else "",
        "kind": "reminder",
        "language": "en",
        "active": "on",
        "body": body,
        "action": "save",
    }


def _refused_clearly(response) -> None:
    assert response.status_code == 403
    assert "organization admins" in response.content.decode()


def test_manager_cannot_open_or_change_an_organization_wide_template(client, org):
    client.force_login(org["manager"])
    url = reverse("messaging_settings:template", args=[org["org_wide"].pk])
    _refused_clearly(client.get(url))
    # Saving it at their own practice would take it away from every other practice.
    _refused_clearly(client.post(url, _template_post(org["own"], "Hijacked {first_name}")))
    _refused_clearly(client.post(url, _template_post(None, "Hijacked {first_name}")))
    org["org_wide"].refresh_from_db()
    assert org["org_wide"].body == ORG_WIDE_BODY and org["org_wide"].practice_id is None


def test_manager_cannot_create_an_organization_wide_template(client, org):
    client.force_login(org["manager"])
    url = reverse("messaging_settings:new_template")
    _refused_clearly(client.post(url, _template_post(None, "Everyone: {first_name}")))
    assert not MessageTemplate.objects.filter(body__startswith="Everyone").exists()


def test_manager_still_edits_own_practices_templates(client, org):
    client.force_login(org["manager"])
    url = reverse("messaging_settings:template", args=[org["at_own"].pk])
    assert client.get(url).status_code == 200
    response = client.post(url, _template_post(org["own"], "Updated {first_name}"))
    assert response.status_code == 302
    org["at_own"].refresh_from_db()
    assert org["at_own"].body == "Updated {first_name}"
    new = client.post(
        reverse("messaging_settings:new_template"), _template_post(org["own"], "New {first_name}")
    )
    assert new.status_code == 302
    assert MessageTemplate.objects.get(body="New {first_name}").practice == org["own"]


def test_organization_admin_changes_organization_wide_templates(client, org):
    client.force_login(org["admin"])
    url = reverse("messaging_settings:template", args=[org["org_wide"].pk])
    assert client.get(url).status_code == 200
    assert client.post(url, _template_post(None, "Admin {first_name}")).status_code == 302
    org["org_wide"].refresh_from_db()
    assert org["org_wide"].body == "Admin {first_name}" and org["org_wide"].practice_id is None


def test_reminder_rules_and_templates_in_the_admin_are_organization_admin_only(client, org):
    rule = ReminderRule.objects.create(organization=org["org"], offsets_minutes=[1440])
    client.force_login(org["manager"])
    for name, obj in (("messaging_reminderrule", rule), ("messaging_messagetemplate", None)):
        for url in (
            reverse(f"admin:{name}_changelist"),
            reverse(f"admin:{name}_add"),
            reverse(f"admin:{name}_change", args=[(obj or org["org_wide"]).pk]),
        ):
            assert client.get(url).status_code in (302, 403), url
    client.post(
        reverse("admin:messaging_reminderrule_change", args=[rule.pk]),
        {"organization": org["org"].pk, "offsets_minutes": "[5]", "channel": "sms"},
    )
    rule.refresh_from_db()
    assert rule.offsets_minutes == [1440]
    client.force_login(org["admin"])
    url = reverse("admin:messaging_reminderrule_change", args=[rule.pk])
    assert client.get(url).status_code == 200


def _experiment_post(practice) -> dict:
    return {
        "name": "Does the 72h text help?",
        "practice": practice.pk if practice else "",
        "withheld_step": "reminder:4320",
        "share_percent": 10,
    }


def test_manager_cannot_start_or_stop_an_organization_wide_experiment(client, org):
    client.force_login(org["manager"])
    url = reverse("analytics:experiments")
    _refused_clearly(client.post(url, _experiment_post(None)))
    assert not Experiment.objects.exists()
    org_wide = Experiment.objects.create(
        organization=org["org"],
        name="Holdout",
        share_basis_points=1000,
        started_at=timezone.now(),
    )
    detail = reverse("analytics:experiment", args=[org_wide.pk])
    assert client.get(detail).status_code == 200  # managers read the results
    _refused_clearly(client.post(detail, {"action": "stop"}))
    org_wide.refresh_from_db()
    assert org_wide.ended_at is None


def test_manager_runs_experiments_at_own_practice_only(client, build, org):
    manager = org["manager"]
    # Front desk in another organization: that practice is not theirs to experiment on.
    elsewhere = build.organization()
    desk_practice = build.practice(elsewhere, name="Desk Only Clinic")
    StaffMembership.objects.create(
        user=manager, organization=elsewhere, role=StaffRole.FRONT_DESK
    ).practices.set([desk_practice])
    client.force_login(manager)
    url = reverse("analytics:experiments")
    response = client.post(url, _experiment_post(desk_practice))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Experiment.objects.filter(organization=elsewhere).exists()
    assert client.post(url, _experiment_post(org["own"])).status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.practice == org["own"]
    detail = reverse("analytics:experiment", args=[experiment.pk])
    client.post(detail, {"action": "stop"})
    experiment.refresh_from_db()
    assert experiment.ended_at is not None


def test_organization_admin_starts_and_stops_organization_wide_experiments(client, org):
    client.force_login(org["admin"])
    assert client.post(reverse("analytics:experiments"), _experiment_post(None)).status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.practice_id is None and experiment.organization == org["org"]
    client.post(reverse("analytics:experiment", args=[experiment.pk]), {"action": "stop"})
    experiment.refresh_from_db()
    assert experiment.ended_at is not None


def test_manager_sets_own_practices_cadence_not_a_sister_practices(client, org):
    client.force_login(org["manager"])
    own = reverse("messaging_settings:practice_cadence", args=[org["own"].pk])
    assert client.get(own).status_code == 200
    response = client.post(own, {"hours_before": "48, 2", "stop_when_confirmed": "on"})
    assert response.status_code == 302
    rule = ReminderRule.objects.get(practice=org["own"])
    assert rule.offsets_minutes == [2880, 120] and rule.appointment_type_id is None
    # The organization's own cadence is untouched: no organization-wide rule appeared.
    assert not ReminderRule.objects.filter(practice__isnull=True).exists()
    sister = reverse("messaging_settings:practice_cadence", args=[org["other"].pk])
    assert client.post(sister, {"hours_before": "1"}).status_code == 404
    assert not ReminderRule.objects.filter(practice=org["other"]).exists()


def test_front_desk_sets_no_practice_cadence(client, build, org):
    client.force_login(build.staff(org["org"], StaffRole.FRONT_DESK, practices=[org["own"]]))
    url = reverse("messaging_settings:practice_cadence", args=[org["own"].pk])
    assert client.post(url, {"hours_before": "1"}).status_code == 403
    assert not ReminderRule.objects.exists()
