"""Nobody grants a role above their own, nor a membership in another organization — by any
door (issue 18): the admin, every staff and settings page, the REST API, the CLI.

Roles are written in one place (careline.clinics.directory and the admin's membership
form); these tests knock on every other door with an escalation and check that no
membership changed.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from careline.clinics.models import StaffMembership, StaffRole
from careline.integrations.api_keys import issue_api_key
from tests.security.test_authorization_matrix import _path, staff_urls, two_practices  # noqa: F401


def _memberships() -> set[tuple]:
    return {
        (m.user_id, m.organization_id, m.role, tuple(sorted(p.pk for p in m.practices.all())))
        for m in StaffMembership.objects.prefetch_related("practices")
    }


def _users() -> set[tuple]:
    return set(get_user_model().objects.values_list("id", "is_staff", "is_superuser"))


@pytest.fixture
def orgs(build):
    a, b = build.organization(name="Grant A"), build.organization(name="Grant B")
    pa, pb = build.practice(a), build.practice(b)
    return {
        "a": a,
        "b": b,
        "pa": pa,
        "pb": pb,
        "admin_a": build.staff(a, StaffRole.ORGANIZATION_ADMIN),
        "manager_a": build.staff(a, StaffRole.PRACTICE_MANAGER, practices=[pa]),
        "desk_a": build.staff(a, StaffRole.FRONT_DESK, practices=[pa]),
        "admin_b": build.staff(b, StaffRole.ORGANIZATION_ADMIN),
    }


def _escalation(user, organization, practices) -> dict:
    """What a forged form post granting organization admin would carry."""
    return {
        "user": user.pk,
        "organization": organization.pk,
        "role": StaffRole.ORGANIZATION_ADMIN,
        "practices": [p.pk for p in practices],
        "is_superuser": "on",
        "is_staff": "on",
    }


# --- the admin -------------------------------------------------------------------------------


def test_admin_of_b_who_works_front_desk_at_a_cannot_raise_it(client, orgs):
    both = orgs["admin_b"]
    at_a = StaffMembership.objects.create(
        user=both, organization=orgs["a"], role=StaffRole.FRONT_DESK
    )
    at_a.practices.set([orgs["pa"]])
    before = _memberships()
    client.force_login(both)
    change = reverse("admin:clinics_staffmembership_change", args=[at_a.pk])
    client.post(change, _escalation(both, orgs["a"], [orgs["pa"]]))
    add = reverse("admin:clinics_staffmembership_add")
    response = client.post(add, _escalation(both, orgs["a"], [orgs["pa"]]))
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert _memberships() == before


def test_admin_of_a_cannot_make_anyone_superuser_or_edit_logins(client, orgs):
    client.force_login(orgs["admin_a"])
    before = _users()
    for user in (orgs["manager_a"], orgs["admin_a"]):
        url = reverse("admin:auth_user_change", args=[user.pk])
        assert client.get(url).status_code == 403
        client.post(url, {"username": user.username, "is_superuser": "on", "is_staff": "on"})
    assert client.get(reverse("admin:auth_user_add")).status_code == 403
    assert client.get(reverse("admin:auth_group_add")).status_code == 403
    assert _users() == before


@pytest.mark.parametrize("role", ["manager_a", "desk_a"])
def test_staff_who_are_not_organization_admins_grant_nothing_in_the_admin(client, orgs, role):
    user = orgs[role]
    client.force_login(user)
    before = _memberships()
    add = reverse("admin:clinics_staffmembership_add")
    assert client.post(add, _escalation(user, orgs["a"], [orgs["pa"]])).status_code in (302, 403)
    own = StaffMembership.objects.get(user=user)
    change = reverse("admin:clinics_staffmembership_change", args=[own.pk])
    assert client.post(change, _escalation(user, orgs["a"], [orgs["pa"]])).status_code in (
        302,
        403,
    )
    assert _memberships() == before


# --- every staff, settings and simulator page --------------------------------------------------


def _simulator_and_settings_urls() -> list[str]:
    urls = []

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and not p.pattern.converters:
                route = prefix + str(p.pattern)
                if route.startswith(("simulator", "settings")):
                    urls.append("/" + route)

    walk(get_resolver().url_patterns)
    return urls


@pytest.mark.parametrize("role", [StaffRole.FRONT_DESK, StaffRole.PRACTICE_MANAGER])
def test_no_staff_page_grants_a_role(client, build, two_practices, role):  # noqa: F811
    org, objects = two_practices
    user = build.staff(org, role, practices=[objects["a"]["practice"]])
    client.force_login(user)
    before, users_before = _memberships(), _users()
    payload = _escalation(user, org, [objects["a"]["practice"], objects["b"]["practice"]])
    urls = [_path(r, n, p, objects["a"]) for r, n, p in staff_urls()]
    urls += _simulator_and_settings_urls()
    assert any(u.startswith("/settings") for u in urls)
    for url in urls:
        response = client.post(url, payload)
        assert response.status_code != 500, url
    assert _memberships() == before and _users() == users_before


# --- the REST API ------------------------------------------------------------------------------


def _api_urls() -> list[str]:
    urls = []

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and prefix.startswith("api/"):
                route = str(p.pattern).strip("^$")
                for converter in p.pattern.converters:
                    route = route.replace(f"<int:{converter}>", "1")
                if "(?P" not in route:
                    urls.append(f"/{prefix}{route}")

    walk(get_resolver().url_patterns)
    return urls + ["/api/v1/staff", "/api/v1/memberships", "/api/v1/users"]


def test_no_api_endpoint_grants_a_role(orgs):
    key = issue_api_key(organization_slug=orgs["a"].slug, name="Escalation probe").plaintext
    client = Client(headers={"Authorization": f"Bearer {key}"})
    before, users_before = _memberships(), _users()
    body = json.dumps(_escalation(orgs["manager_a"], orgs["b"], [orgs["pb"]]))
    urls = _api_urls()
    assert "/api/v1/reminder-rules" in urls
    for url in urls:
        for method in ("POST", "PUT", "PATCH"):
            response = client.generic(method, url, body, content_type="application/json")
            assert response.status_code != 500, f"{method} {url}"
    assert _memberships() == before and _users() == users_before


# --- the CLI -----------------------------------------------------------------------------------
# `careline createstaff` is the operator's door (it runs with the server's database access,
# like a superuser): it still cannot mix organizations or make superusers.


def test_createstaff_cannot_give_a_practice_of_another_organization(orgs):
    before = _memberships()
    with pytest.raises(CommandError, match="Unknown practice code"):
        call_command(
            "createstaff",
            "crossover",
            password="a-long-pass-phrase-42",
            organization=orgs["a"].slug,
            role=StaffRole.PRACTICE_MANAGER,
            practice=[orgs["pb"].code],
        )
    assert _memberships() == before
    assert not get_user_model().objects.filter(username="crossover").exists()


def test_createstaff_refuses_unknown_roles_and_never_makes_superusers(orgs):
    with pytest.raises(CommandError):
        call_command(
            "createstaff",
            "root",
            password="a-long-pass-phrase-42",
            organization=orgs["a"].slug,
            role="superuser",
        )
    call_command(
        "createstaff",
        "chief",
        password="a-long-pass-phrase-42",
        organization=orgs["a"].slug,
        role=StaffRole.ORGANIZATION_ADMIN,
    )
    chief = get_user_model().objects.get(username="chief")
    assert not chief.is_superuser
    assert list(chief.memberships.values_list("organization_id", "role")) == [
        (orgs["a"].pk, StaffRole.ORGANIZATION_ADMIN)
    ]
