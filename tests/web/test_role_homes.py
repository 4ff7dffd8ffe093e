"""Each role lands on its own home after sign-in and at `/`; 403 and 404 are pages in the
app's layout with a way back."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from careline.clinics.models import StaffRole

PASSWORD = "s3cret-pass!"


@pytest.fixture
def org(build):
    org = build.organization(name="Hill Country Health")
    build.practice(org, name="Oak Clinic")
    build.practice(org, name="Elm Clinic")
    return org


def _sign_in(build, org, role, practices=None) -> tuple[Client, object]:
    practices = list(org.practices.all()) if practices is None else practices
    user = build.staff(org, role, practices=practices)
    client = Client()
    response = client.post(
        reverse("login"), {"username": user.username, "password": PASSWORD}, follow=True
    )
    return client, response


def test_front_desk_lands_on_todays_day_view(build, org):
    client, landed = _sign_in(
        build, org, StaffRole.FRONT_DESK, [org.practices.get(name="Oak Clinic")]
    )
    assert landed.status_code == 200
    assert landed.redirect_chain[-1][0].startswith("/schedule/")
    assert landed.templates[0].name == "scheduling/day.html"
    again = client.get("/", follow=True)
    assert again.templates[0].name == "scheduling/day.html"


def test_a_manager_lands_on_their_practices_dashboard(build, org):
    client, landed = _sign_in(build, org, StaffRole.PRACTICE_MANAGER)
    assert landed.status_code == 200
    assert landed.redirect_chain[-1][0] == reverse("analytics:dashboard")
    assert client.get("/").url == reverse("analytics:dashboard")


def test_an_organization_admin_lands_on_the_organization_overview(build, org):
    elsewhere = build.organization(name="Elsewhere Health")
    build.practice(elsewhere, name="Hidden Clinic")
    build.staff(org, StaffRole.FRONT_DESK, practices=list(org.practices.all()))
    client, landed = _sign_in(build, org, StaffRole.ORGANIZATION_ADMIN, [])
    assert landed.status_code == 200 and landed.templates[0].name == "web/organization.html"
    page = landed.content.decode()
    assert "Hill Country Health" in page and "Oak Clinic" in page and "Elm Clinic" in page
    assert "+15125550100" in page  # the organization's texting number
    assert "Front desk: 1" in page and "Organization admin: 1" in page
    assert "Hidden Clinic" not in page and "Elsewhere Health" not in page


def test_a_staff_user_without_a_role_sees_the_plain_home(build, org):
    client = Client()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("norole", password=PASSWORD, is_staff=True)
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200 and response.templates[0].name == "web/home.html"


@pytest.mark.parametrize("debug", [False])
def test_not_found_and_forbidden_are_pages_with_a_way_back(build, org, settings, debug):
    settings.DEBUG = debug
    client, _ = _sign_in(build, org, StaffRole.FRONT_DESK, [org.practices.get(name="Oak Clinic")])
    hidden = build.practice(build.organization(), name="Hidden Clinic")

    for url in ("/no-such-page/", f"/settings/practices/{hidden.pk}/hours/", "/inbox/999999/"):
        response = client.get(url)
        assert response.status_code == 404, url
        page = response.content.decode()
        assert "We couldn’t find that page" in page and 'href="/"' in page, url
        assert 'class="topbar"' in page and "careline.css" in page, url
    forbidden = client.get(reverse("messaging_settings:overview"))
    assert forbidden.status_code == 403
    page = forbidden.content.decode()
    assert "You don’t have access to this" in page and 'href="/"' in page
    assert 'class="topbar"' in page and "Settings are for practice managers" in page

    anonymous = Client().get("/no-such-page/")
    assert anonymous.status_code == 404 and 'href="/login/"' in anonymous.content.decode()
