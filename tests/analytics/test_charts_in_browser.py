"""The no-show chart drawn in real Chromium matches the numbers in the table."""

from datetime import date, datetime, time, timedelta

import pytest

from careline.clinics.models import StaffRole
from careline.scheduling.appointments import book_appointment, change_status
from careline.scheduling.models import AppointmentStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_weekly_no_show_chart_has_one_bar_per_week_scaled_to_the_rate(live_server, page, build):
    org = build.organization(name="Lakeside Health")
    practice = build.practice(org, name="Lakeside Family Medicine", time_zone="America/Chicago")
    provider = build.provider(practice, weekdays=range(7))
    kind = build.appointment_type(org)
    monday = date(2026, 9, 7)
    # Weeks with 1, 2 and 4 no-shows out of 8 visits each: rates 12.5%, 25%, 50%.
    for week, no_shows in enumerate((1, 2, 4)):
        for i in range(8):
            appt = book_appointment(
                patient=build.patient(org),
                provider=provider,
                practice=practice,
                appointment_type=kind,
                check_working_time=False,
                start=datetime.combine(
                    monday + timedelta(weeks=week), time(9), tzinfo=practice.zone
                )
                + timedelta(minutes=20 * i),
            )
            outcome = AppointmentStatus.NO_SHOW if i < no_shows else AppointmentStatus.FULFILLED
            change_status(appt, outcome, source="staff")
    build.staff(
        org,
        StaffRole.PRACTICE_MANAGER,
        practices=[practice],
        username="manager",
        password="manager-pass-1",
    )

    page.goto(f"{live_server.url}/login/?next=/analytics/%3Fgroup_by%3Dweek")
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill("manager-pass-1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("svg.chart rect")

    bars = page.locator("svg.chart rect")
    assert bars.count() == 3
    heights = [float(bars.nth(i).get_attribute("height")) for i in range(3)]
    assert heights[2] == max(heights)
    assert heights[0] == pytest.approx(heights[2] / 4, abs=1)
    assert heights[1] == pytest.approx(heights[2] / 2, abs=1)
    # Drawn, not just present: the tallest bar is really taller on screen.
    boxes = [bars.nth(i).bounding_box() for i in range(3)]
    assert boxes[2]["height"] > boxes[1]["height"] > boxes[0]["height"] > 0
    table = page.get_by_role("table").first.inner_text()
    assert "12.5%" in table and "25.0%" in table and "50.0%" in table
