"""Staff pages work on a tablet: at 768 px nothing overflows sideways (real Chromium), for
each role's home and the pages the front desk and managers live in."""

from __future__ import annotations

import pytest

from careline.clinics.models import StaffRole
from careline.conversations.models import Conversation
from tests.browser import SCREENSHOTS
from tests.web.test_staff_workspace_in_browser import PASSWORD, Clinic, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 768
LONG = "Please call me back about the results " + "and the bill, " * 12 + "thanks!"


@pytest.fixture
def clinic(build, settings) -> Clinic:
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"
    settings.CARELINE_SENDING_HOURS_START = 0
    settings.CARELINE_SENDING_HOURS_END = 24
    return Clinic(build)


@pytest.fixture
def tablet(chromium, request):
    context = chromium.new_context(viewport={"width": WIDTH, "height": 1024}, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def _overflow(page) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth")


def _check(page, live_server, path: str, name: str, too_wide: dict[str, int]) -> None:
    page.goto(f"{live_server.url}{path}")
    assert "/login/" not in page.url, path
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"tablet-{name}.png"), full_page=True)
    width = _overflow(page)
    if width > WIDTH:
        too_wide[page.url.removeprefix(live_server.url)] = width


def test_staff_pages_fit_a_768_px_tablet(live_server, tablet, clinic, build):
    today = clinic.today()
    people = [
        clinic.patient("Alexandra Montgomery-Villanueva", "+15125550401"),
        clinic.patient("James Carter", "+15125550402"),
        clinic.patient("Rosa Delgado", "+15125550403", language="es"),
    ]
    for i, person in enumerate(people):
        clinic.visit(person, clinic.lee, today, f"{9 + i}:00")
        clinic.visit(person, clinic.patel, today, f"{13 + i}:30")
    clinic.texts_in(people[0], LONG)
    clinic.texts_in(people[1], "Can I move my visit to Friday afternoon?")
    conversation = Conversation.objects.get(phone=people[0].mobile_phone)
    build.staff(
        clinic.org, StaffRole.ORGANIZATION_ADMIN, [], username="orgadmin", password=PASSWORD
    )

    too_wide: dict[str, int] = {}
    sign_in(tablet, live_server, "frontdesk")
    for path, name in [
        ("/", "front-desk-home"),
        ("/inbox/", "inbox"),
        (f"/inbox/{conversation.pk}/", "conversation"),
        (f"/patients/{people[0].pk}/", "patient"),
        (f"/settings/practices/{clinic.practice.pk}/hours/", "office-hours-read-only"),
        ("/no-such-page/", "not-found"),
    ]:
        _check(tablet, live_server, path, name, too_wide)

    tablet.context.clear_cookies()
    sign_in(tablet, live_server, "manager")
    for path, name in [
        ("/", "manager-home"),
        ("/settings/", "settings"),
        ("/settings/templates/new/", "template"),
        (f"/settings/practices/{clinic.practice.pk}/hours/", "office-hours"),
        ("/broadcasts/", "broadcasts"),
    ]:
        _check(tablet, live_server, path, name, too_wide)

    tablet.context.clear_cookies()
    sign_in(tablet, live_server, "orgadmin")
    _check(tablet, live_server, "/", "organization", too_wide)
    assert too_wide == {}, f"wider than {WIDTH} px"
