"""A front-desk user of practice A can see nothing of practice B; the admin is for
organization admins, who see nothing of another organization."""

from datetime import date, datetime, time

import pytest
from django.urls import reverse

from careline.clinics.models import Practice, Provider, StaffRole
from careline.patients.models import Patient
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import Appointment, AppointmentEvent, WorkingHours


@pytest.fixture
def two_practices(build):
    org = build.organization()
    a = build.practice(org, name="Northside Family Medicine")
    b = build.practice(org, name="Southside Pediatrics")
    kind = build.appointment_type(org)
    world = {"org": org, "a": a, "b": b}
    for key, practice in (("a", a), ("b", b)):
        provider = build.provider(practice, display_name=f"Dr. {key.upper()}")
        patient = build.patient(org, home_practice=practice, family_name=f"Family{key.upper()}")
        appt = book_appointment(
            patient=patient,
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=datetime.combine(date(2026, 12, 2), time(9), tzinfo=practice.zone),
        )
        world[f"{key}_provider"], world[f"{key}_patient"], world[f"{key}_appt"] = (
            provider,
            patient,
            appt,
        )
    world["desk_a"] = build.staff(org, StaffRole.FRONT_DESK, practices=[a], username="desk_a")
    world["admin"] = build.staff(org, StaffRole.ORGANIZATION_ADMIN, username="orgadmin")
    return world


def test_querysets_are_scoped_for_front_desk(two_practices):
    w = two_practices
    user = w["desk_a"]
    assert list(Practice.objects.visible_to(user)) == [w["a"]]
    assert list(Provider.objects.visible_to(user)) == [w["a_provider"]]
    assert list(Patient.objects.visible_to(user)) == [w["a_patient"]]
    assert list(Appointment.objects.visible_to(user)) == [w["a_appt"]]
    assert set(AppointmentEvent.objects.visible_to(user).values_list("appointment", flat=True)) == {
        w["a_appt"].pk
    }
    assert set(WorkingHours.objects.visible_to(user).values_list("practice", flat=True)) == {
        w["a"].pk
    }


def test_a_patient_of_b_who_visits_a_becomes_visible_to_a(build, two_practices):
    w = two_practices
    book_appointment(
        patient=w["b_patient"],
        provider=w["a_provider"],
        practice=w["a"],
        appointment_type=w["a_appt"].appointment_type,
        start=datetime.combine(date(2026, 12, 3), time(10), tzinfo=w["a"].zone),
    )
    assert w["b_patient"] in Patient.objects.visible_to(w["desk_a"])


def test_organization_admin_sees_every_practice(two_practices):
    w = two_practices
    assert set(Practice.objects.visible_to(w["admin"])) == {w["a"], w["b"]}
    assert Appointment.objects.visible_to(w["admin"]).count() == 2


def test_anonymous_and_memberless_users_see_nothing(build, two_practices, django_user_model):
    from django.contrib.auth.models import AnonymousUser

    loner = django_user_model.objects.create_user("loner", password="x-pass-123!")
    for user in (AnonymousUser(), loner):
        assert not Practice.objects.visible_to(user).exists()
        assert not Appointment.objects.visible_to(user).exists()


@pytest.fixture
def elsewhere(build):
    """Another organization with its own admin, practice and appointment."""
    org = build.organization()
    practice = build.practice(org, name="Elsewhere Clinic")
    appt = book_appointment(
        patient=build.patient(org, family_name="Elsewhere"),
        provider=build.provider(practice, display_name="Dr. Elsewhere"),
        practice=practice,
        appointment_type=build.appointment_type(org),
        start=datetime.combine(date(2026, 12, 2), time(9), tzinfo=practice.zone),
    )
    admin = build.staff(org, StaffRole.ORGANIZATION_ADMIN, username="elsewhere_admin")
    return {"org": org, "practice": practice, "appt": appt, "admin": admin}


@pytest.mark.parametrize(
    "model_name, key",
    [
        ("scheduling/appointment", "appt"),
        ("patients/patient", "patient"),
        ("clinics/provider", "provider"),
        ("clinics/practice", None),
    ],
)
def test_admin_change_pages_of_other_practice_are_not_found(
    client, two_practices, elsewhere, model_name, key
):
    w = two_practices
    other = w[f"b_{key}"] if key else w["b"]
    mine = w[f"a_{key}"] if key else w["a"]
    app_label, model = model_name.split("/")
    own_url = reverse(f"admin:{app_label}_{model}_change", args=[mine.pk])
    other_url = reverse(f"admin:{app_label}_{model}_change", args=[other.pk])
    changelist_url = reverse(f"admin:{app_label}_{model}_changelist")
    # The admin is for organization admins: the front desk gets none of it, not even
    # its own practice's rows.
    client.force_login(w["desk_a"])
    for url in (own_url, other_url, changelist_url):
        response = client.get(url)
        assert response.status_code in (302, 403), url
        assert str(mine) not in response.content.decode()
    client.force_login(w["admin"])
    assert client.get(own_url).status_code == 200
    assert client.get(other_url).status_code == 200
    # An organization admin of another organization: both rows are hidden.
    client.force_login(elsewhere["admin"])
    for url in (own_url, other_url):
        # Django's admin redirects to the index with a "doesn't exist" message for hidden rows.
        response = client.get(url, follow=True)
        assert "doesn’t exist" in response.content.decode() or response.status_code == 404
    changelist = client.get(changelist_url)
    assert changelist.status_code == 200
    body = changelist.content.decode()
    assert str(other) not in body and str(mine) not in body


def test_admin_form_cannot_point_an_appointment_at_another_practice(
    client, two_practices, elsewhere
):
    w = two_practices
    # The front desk cannot open or post the admin form at all.
    client.force_login(w["desk_a"])
    appt = w["a_appt"]
    url = reverse("admin:scheduling_appointment_change", args=[appt.pk])
    assert client.get(url).status_code in (302, 403)
    assert client.post(url, {"practice": w["b"].pk}).status_code in (302, 403)
    appt.refresh_from_db()
    assert appt.practice_id == w["a"].pk
    # An organization admin cannot point their own appointment at another organization's
    # practice: visits are view-only in the admin (they change through the app's doors),
    # so a forged post is refused; the scoped choices of editable forms are checked in
    # tests/security/test_admin_scoping.py.
    client.force_login(elsewhere["admin"])
    theirs = elsewhere["appt"]
    url = reverse("admin:scheduling_appointment_change", args=[theirs.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"practice": w["b"].pk}).status_code == 403
    theirs.refresh_from_db()
    assert theirs.practice_id == elsewhere["practice"].pk


def test_home_page_lists_only_own_practices(client, two_practices):
    w = two_practices
    client.force_login(w["desk_a"])
    # The front desk's home is today's day view, its practice picker their own practices.
    body = client.get(reverse("home"), follow=True).content.decode()
    assert "Northside Family Medicine" in body
    assert "Southside Pediatrics" not in body
