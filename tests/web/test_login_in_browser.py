"""A front-desk person signs in with a real browser and sees their practice."""

import pytest

from careline.clinics.models import StaffRole

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_sign_in_shows_own_practices_only(live_server, page, build):
    org = build.organization(name="Lakeside Health")
    mine = build.practice(org, name="Lakeside Family Medicine")
    build.practice(org, name="Hillcrest Cardiology")
    build.staff(
        org,
        StaffRole.FRONT_DESK,
        practices=[mine],
        username="frontdesk",
        password="careline-test-pw",
    )

    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.get_by_label("Username").fill("frontdesk")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    assert "correct username and password" in page.get_by_role("alert").inner_text()

    page.get_by_label("Username").fill("frontdesk")
    page.get_by_label("Password").fill("careline-test-pw")
    page.get_by_role("button", name="Sign in").click()
    # The front desk's home is today's day view of their own practice.
    page.wait_for_url(f"{live_server.url}/schedule/**")
    assert "Lakeside Family Medicine" in page.get_by_role("heading", level=1).inner_text()
    practices = page.locator("select#practice").inner_text()
    assert "Lakeside Family Medicine" in practices
    assert "Hillcrest Cardiology" not in practices
