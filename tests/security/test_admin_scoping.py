"""Issue 18, holes 1 and 2: the Django admin is for organization admins only, scoped to
their organization — no role escalation, no other organization's rows, names or numbers."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from careline.audit.models import AuditEvent
from careline.clinics.models import Organization, StaffMembership, StaffRole
from careline.integrations.models import Hl7Feed
from careline.scheduling.appointments import book_appointment

A_PATIENT = "Quixotica"
A_ADMIN = "alpha_root_admin"
A_NUMBER = "+15125559871"


@pytest.fixture
def world(build):
    a = build.organization(name="Alpha Org Zeta", default_sender_number=A_NUMBER)
    b = build.organization(name="Beta Health")
    pa = build.practice(a, name="Alpha Clinic Zeta", sender_number="+15125559872")
    pb = build.practice(b, name="Beta Clinic")
    kind_a, kind_b = build.appointment_type(a), build.appointment_type(b)
    prov_a = build.provider(pa, display_name="Dr. Alphonse Zeta")
    prov_b = build.provider(pb, display_name="Dr. Beta")
    pat_a = build.patient(a, home_practice=pa, family_name=A_PATIENT, given_name="Zelda")
    pat_b = build.patient(b, home_practice=pb, family_name="Betapatient", given_name="Bo")
    for org, name in ((a, "AlphaFeedZeta"), (b, "BetaFeed")):
        Hl7Feed.objects.create(organization=org, name=name, time_zone="America/Chicago")
    start = datetime.combine(date(2026, 12, 2), time(9), tzinfo=pa.zone)
    appt_a = book_appointment(
        patient=pat_a, provider=prov_a, practice=pa, appointment_type=kind_a, start=start
    )
    appt_b = book_appointment(
        patient=pat_b, provider=prov_b, practice=pb, appointment_type=kind_b, start=start
    )
    return {
        "a": a,
        "b": b,
        "pa": pa,
        "pb": pb,
        "pat_a": pat_a,
        "pat_b": pat_b,
        "appt_a": appt_a,
        "appt_b": appt_b,
        "admin_a": build.staff(a, StaffRole.ORGANIZATION_ADMIN, username=A_ADMIN),
        "manager_a": build.staff(a, StaffRole.PRACTICE_MANAGER, practices=[pa]),
        "admin_b": build.staff(b, StaffRole.ORGANIZATION_ADMIN, username="beta_admin"),
        "desk_b": build.staff(b, StaffRole.FRONT_DESK, practices=[pb], username="beta_desk"),
    }


def _assert_nothing_of_a(response, url):
    assert response.status_code != 500, url
    body = response.content.decode()
    for secret in (
        A_PATIENT,
        A_ADMIN,
        "Alpha Org Zeta",
        "Alpha Clinic Zeta",
        A_NUMBER,
        "Alphonse",
        "AlphaFeedZeta",
    ):
        assert secret not in body, f"{secret} leaked at {url}"


def test_practice_manager_cannot_make_themself_organization_admin(client, world):
    manager = world["manager_a"]
    client.force_login(manager)
    membership = StaffMembership.objects.get(user=manager)
    url = reverse("admin:clinics_staffmembership_change", args=[membership.pk])
    assert client.get(url).status_code in (302, 403)
    response = client.post(
        url,
        {
            "user": manager.pk,
            "organization": world["a"].pk,
            "role": StaffRole.ORGANIZATION_ADMIN,
            "practices": [world["pa"].pk],
        },
    )
    assert response.status_code in (302, 403)
    membership.refresh_from_db()
    assert membership.role == StaffRole.PRACTICE_MANAGER
    for name in ("clinics_staffmembership_changelist", "clinics_staffmembership_add"):
        assert client.get(reverse(f"admin:{name}")).status_code in (302, 403)
    org_url = reverse("admin:clinics_organization_change", args=[world["a"].pk])
    assert client.get(org_url).status_code in (302, 403)
    client.post(org_url, {"name": "Renamed", "slug": world["a"].slug})
    world["a"].refresh_from_db()
    assert world["a"].name == "Alpha Org Zeta"


def test_practice_manager_gets_no_admin(client, world):
    client.force_login(world["manager_a"])
    assert client.get("/admin/").status_code in (302, 403)
    for model in admin.site._registry:
        meta = model._meta
        for view in ("changelist", "add"):
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}")
            response = client.get(url)
            assert response.status_code in (302, 403), url
            assert A_PATIENT not in response.content.decode()
    url = reverse("admin:patients_patient_change", args=[world["pat_a"].pk])
    assert client.get(url).status_code in (302, 403)
    autocomplete = reverse("admin:autocomplete")
    params = {"app_label": "scheduling", "model_name": "appointment", "field_name": "patient"}
    response = client.get(autocomplete, {**params, "term": A_PATIENT})
    assert A_PATIENT not in response.content.decode()


def test_front_desk_gets_no_admin(client, world):
    client.force_login(world["desk_b"])
    assert client.get("/admin/").status_code in (302, 403)
    url = reverse("admin:patients_patient_change", args=[world["pat_b"].pk])
    assert client.get(url).status_code in (302, 403)


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_org_b_admin_sees_nothing_of_org_a_on_any_admin_page(client, world, model):
    client.force_login(world["admin_b"])
    meta = model._meta
    for view in ("changelist", "add"):
        try:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}")
        except NoReverseMatch:
            continue
        _assert_nothing_of_a(client.get(url), url)


def test_org_b_admin_cannot_open_org_a_rows(client, world):
    client.force_login(world["admin_b"])
    membership_a = StaffMembership.objects.get(user=world["admin_a"])
    for name, obj in (
        ("clinics_organization", world["a"]),
        ("clinics_practice", world["pa"]),
        ("clinics_staffmembership", membership_a),
        ("patients_patient", world["pat_a"]),
        ("scheduling_appointment", world["appt_a"]),
    ):
        url = reverse(f"admin:{name}_change", args=[obj.pk])
        response = client.get(url, follow=True)
        _assert_nothing_of_a(response, url)


def test_relation_list_filters_offer_only_own_rows(client, world):
    client.force_login(world["admin_b"])
    url = reverse("admin:integrations_hl7message_changelist")
    _assert_nothing_of_a(client.get(url), url)


def test_raw_id_label_hides_org_a_patient_and_audits_own(client, world):
    client.force_login(world["admin_b"])
    # Visits are view-only in the admin; the waitlist entry form has the patient raw-id.
    add = reverse("admin:waitlist_waitlistentry_add")
    _assert_nothing_of_a(client.get(add, {"patient": world["pat_a"].pk}), add)
    assert not AuditEvent.objects.filter(patient_id=world["pat_a"].pk).exists()
    response = client.get(add, {"patient": world["pat_b"].pk})
    assert "Betapatient" in response.content.decode()
    assert AuditEvent.objects.filter(
        user=world["admin_b"], patient_id=world["pat_b"].pk, what="admin raw-id label"
    ).exists()
    form = response.context["adminform"].form
    for name in ("practice", "provider", "appointment_type"):
        values = {str(obj) for obj in form.fields[name].queryset}
        assert values and not any("Alpha" in v for v in values), name


def test_autocomplete_hides_org_a_patient_and_audits_own(client, world):
    client.force_login(world["admin_b"])
    url = reverse("admin:autocomplete")
    params = {"app_label": "scheduling", "model_name": "appointment", "field_name": "patient"}
    response = client.get(url, {**params, "term": A_PATIENT})
    _assert_nothing_of_a(response, url)
    assert response.json()["results"] == []
    response = client.get(url, {**params, "term": "Betapatient"})
    assert [r["id"] for r in response.json()["results"]] == [str(world["pat_b"].pk)]
    assert AuditEvent.objects.filter(
        user=world["admin_b"], patient_id=world["pat_b"].pk, what="admin autocomplete"
    ).exists()
    for model_name, field_name in (
        ("staffmembership", "organization"),
        ("practice", "organization"),
    ):
        response = client.get(
            url, {"app_label": "clinics", "model_name": model_name, "field_name": field_name}
        )
        _assert_nothing_of_a(response, url)


def _membership_post(user, organization, role, practices=()):
    return {
        "user": user.pk,
        "organization": organization.pk,
        "role": role,
        "practices": [p.pk for p in practices],
    }


def test_org_b_admin_cannot_grant_membership_in_org_a(client, world, django_user_model):
    client.force_login(world["admin_b"])
    url = reverse("admin:clinics_staffmembership_add")
    newcomer = django_user_model.objects.create_user("newcomer", password="x-pass-123!")
    before = StaffMembership.objects.count()
    for data in (
        _membership_post(world["desk_b"], world["a"], StaffRole.ORGANIZATION_ADMIN),
        _membership_post(newcomer, world["a"], StaffRole.FRONT_DESK, [world["pa"]]),
        _membership_post(world["admin_a"], world["b"], StaffRole.FRONT_DESK, [world["pb"]]),
    ):
        response = client.post(url, data)
        assert response.status_code == 200  # the form again, with errors
        assert response.context["adminform"].form.errors
    assert StaffMembership.objects.count() == before
    # Moving an own membership into org A is refused too.
    own = StaffMembership.objects.get(user=world["desk_b"])
    change = reverse("admin:clinics_staffmembership_change", args=[own.pk])
    response = client.post(
        change, _membership_post(world["desk_b"], world["a"], StaffRole.FRONT_DESK)
    )
    assert response.status_code in (200, 302)
    own.refresh_from_db()
    assert own.organization_id == world["b"].pk


def test_role_above_own_is_refused(rf, world):
    from careline.clinics.admin import StaffMembershipForm

    manager = world["manager_a"]
    form_class = type("F", (StaffMembershipForm,), {"granted_by": manager})
    form = form_class(
        data=_membership_post(manager, world["a"], StaffRole.ORGANIZATION_ADMIN, [world["pa"]]),
        instance=StaffMembership.objects.get(user=manager),
    )
    assert not form.is_valid()
    assert "role" in form.errors


def test_org_b_admin_cannot_add_organizations(client, world):
    client.force_login(world["admin_b"])
    url = reverse("admin:clinics_organization_add")
    assert client.get(url).status_code == 403
    client.post(url, {"name": "Sneaky", "slug": "sneaky"})
    assert not Organization.objects.filter(slug="sneaky").exists()


def test_org_b_admin_edits_own_membership_within_rank(client, world):
    client.force_login(world["admin_b"])
    own = StaffMembership.objects.get(user=world["desk_b"])
    change = reverse("admin:clinics_staffmembership_change", args=[own.pk])
    response = client.post(
        change,
        _membership_post(world["desk_b"], world["b"], StaffRole.PRACTICE_MANAGER, [world["pb"]]),
    )
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.role == StaffRole.PRACTICE_MANAGER


def test_anonymous_admin_login_page_answers_200_not_500(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"password" in response.content.lower()


def test_org_b_admin_who_works_front_desk_at_org_a_sees_only_org_b(client, world):
    both = world["admin_b"]
    StaffMembership.objects.create(
        user=both, organization=world["a"], role=StaffRole.FRONT_DESK
    ).practices.set([world["pa"]])
    client.force_login(both)
    for name in ("patients_patient", "clinics_practice", "scheduling_appointment"):
        url = reverse(f"admin:{name}_changelist")
        response = client.get(url)
        assert response.status_code == 200
        _assert_nothing_of_a(response, url)


def test_visits_are_view_only_in_the_admin_and_patient_edits_are_new_versions(client, world):
    # A visit changed in the admin would skip its texts, re-planning and the EHR
    # write-back; a patient edited there must still reach FHIR clients as a new version.
    client.force_login(world["admin_b"])
    appt = world["appt_b"]
    change = reverse("admin:scheduling_appointment_change", args=[appt.pk])
    assert client.get(change).status_code == 200
    response = client.post(change, {"status": "cancelled"})
    assert response.status_code == 403
    appt.refresh_from_db()
    assert appt.status == "booked"
    assert client.get(reverse("admin:scheduling_appointment_add")).status_code == 403

    patient = world["pat_b"]
    before = patient.version
    url = reverse("admin:patients_patient_change", args=[patient.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data["given_name"] = "Bonnie"
    data = {k: (v.pk if hasattr(v, "pk") else v) for k, v in data.items()}
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    patient.refresh_from_db()
    assert patient.given_name == "Bonnie" and patient.version == before + 1
