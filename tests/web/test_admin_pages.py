"""Every model registered in the admin opens for an organization admin and hides others' rows."""

import pytest
from django.contrib import admin
from django.urls import reverse

from careline.clinics.models import StaffRole


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_changelist_opens_for_an_organization_admin(client, build, model):
    org = build.organization()
    build.practice(org)
    client.force_login(build.staff(org, StaffRole.ORGANIZATION_ADMIN))
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    response = client.get(url)
    assert response.status_code in (200, 403), f"{url} gave {response.status_code}"


def test_front_desk_does_not_see_other_organizations_practices_in_admin(client, build):
    # The admin is for organization admins: the front desk is refused, and an
    # organization admin sees their own organization's practices, never another's.
    mine, theirs = build.organization(), build.organization()
    a = build.practice(mine, name="Mine Clinic")
    build.practice(theirs, name="Theirs Clinic")
    url = reverse("admin:clinics_practice_changelist")
    client.force_login(build.staff(mine, StaffRole.FRONT_DESK, practices=[a]))
    response = client.get(url)
    assert response.status_code in (302, 403)
    assert "Mine Clinic" not in response.content.decode()
    client.force_login(build.staff(mine, StaffRole.ORGANIZATION_ADMIN))
    body = client.get(url).content.decode()
    assert "Mine Clinic" in body and "Theirs Clinic" not in body


@pytest.mark.parametrize(
    "role, offered",
    [
        (StaffRole.FRONT_DESK, False),
        (StaffRole.PRACTICE_MANAGER, False),
        (StaffRole.ORGANIZATION_ADMIN, True),
    ],
)
def test_the_top_bar_offers_the_admin_only_to_those_it_lets_in(client, build, role, offered):
    org = build.organization()
    practice = build.practice(org)
    client.force_login(build.staff(org, role, practices=[practice]))
    response = client.get(reverse("conversations:inbox"), follow=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert (f'href="{reverse("admin:index")}"' in body) is offered
