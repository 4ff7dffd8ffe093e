"""At 72 practices and 420 providers the comparison is readable in real Chromium: a ranked
top N with sparklines, search, sorting by a column header, bottom N, and each chart
downloads as CSV and PNG."""

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.demo.generator import DemoOptions, generate_demo
from careline.messaging.models import OutboundMessage
from careline.scheduling.models import Appointment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _rates(page) -> list[float]:
    bars = page.locator("#ranking-chart rect.bar")
    return [float(bars.nth(i).get_attribute("data-rate")) for i in range(bars.count())]


def test_seventy_two_practices_and_four_hundred_twenty_providers_compare(live_server, page, build):
    demo = generate_demo(
        DemoOptions(practices=72, providers=420, patients=4000, appointments=40_000,
                    organization_slug="big-group")
    )  # fmt: skip
    # The demo has no texting history: record reminders sent for 3,000 past visits.
    now = timezone.now()
    past = Appointment.objects.filter(organization=demo.organization, start__lt=now).order_by(
        "-start"
    )[:3000]
    OutboundMessage.objects.bulk_create(
        OutboundMessage(
            organization_id=a.organization_id, practice_id=a.practice_id,
            patient_id=a.patient_id, appointment_id=a.id, channel="sms",
            to_address="+15125550100", kind="reminder", step_key="reminder:1440",
            visit_start=a.start, state="delivered", due_at=a.start - timedelta(days=1),
            created_at=a.start - timedelta(days=2),
        )
        for a in past
    )  # fmt: skip
    build.staff(demo.organization, StaffRole.ORGANIZATION_ADMIN, username="lead",
                password="lead-pass-123")  # fmt: skip
    page.goto(f"{live_server.url}/login/?next=/analytics/compare/%3Fgroup_by%3Dpractice")
    page.get_by_label("Username").fill("lead")
    page.get_by_label("Password").fill("lead-pass-123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#ranking-chart rect.bar")

    # Top 15 of 72 by no-show rate, highest first, each row with its sparkline.
    rates = _rates(page)
    assert len(rates) == 15 and rates == sorted(rates, reverse=True)
    summary = page.get_by_test_id("ranking-summary").inner_text()
    assert "Top 15 of" in summary and "practices" in summary
    assert page.locator("table.ranking svg.sparkline polyline").count() == 15
    boxes = [page.locator("#ranking-chart rect.bar").nth(i).bounding_box() for i in (0, 14)]
    assert boxes[0]["width"] >= boxes[1]["width"] > 0
    page.screenshot(path=str(DOCS / "analytics-compare-practices.png"), full_page=True)

    # Bottom 10 providers, searched by name.
    page.select_option("#group_by", "provider")
    page.select_option("#show", "bottom")
    page.fill("#n", "10")
    page.fill("#min_due", "5")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector("table.ranking tbody tr[data-rank]")
    ranks = [int(r) for r in page.locator("table.ranking tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.rank)")]  # fmt: skip
    matching = int(page.get_by_test_id("ranking-summary").inner_text().split(" of ")[1].split()[0])
    assert matching > 300 and ranks == list(range(matching - 9, matching + 1))
    first_name = page.locator("table.ranking tbody tr td:nth-child(2)").first.inner_text()
    needle = first_name.split()[-1][:5]
    page.fill("#q", needle)
    page.get_by_role("button", name="Show").click()
    names = page.locator("table.ranking tbody tr td:nth-child(2)").all_inner_texts()
    assert names and all(needle.casefold() in n.casefold() for n in names)

    # Sorting by a column header: confirmation rate, then reversed.
    page.fill("#q", "")
    page.select_option("#show", "top")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name="Confirmation rate").click()
    page.wait_for_selector("th[aria-sort='descending'] >> text=Confirmation rate")
    column = page.locator("table.ranking tbody tr td:nth-child(6)").all_inner_texts()
    values = [float(v.rstrip("%")) for v in column]
    assert values == sorted(values, reverse=True)
    # The chart draws the rate ranked by.
    assert [round(r * 100, 1) for r in _rates(page)] == values
    page.get_by_role("link", name="Confirmation rate").click()
    page.wait_for_selector("th[aria-sort='ascending']")
    column = page.locator("table.ranking tbody tr td:nth-child(6)").all_inner_texts()
    lowest = [float(v.rstrip("%")) for v in column]
    assert lowest == sorted(lowest) and lowest[-1] <= values[-1]

    # The chart's CSV holds the rows drawn; its PNG is a real PNG of the chart's size.
    csv_link = page.locator("figure.ranked-chart a", has_text="Download CSV")
    with page.expect_download() as download:
        csv_link.click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r[1] for r in rows[1:]] == page.locator(
        "table.ranking tbody tr td:nth-child(2)").all_inner_texts()  # fmt: skip
    with page.expect_download() as download:
        page.locator("button[data-png-of='ranking-chart']").click()
    png = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == "careline-provider-ranking.png"
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1440
    with page.expect_download() as download:
        page.locator("button[data-png-of='funnel-chart']").click()
    assert Path(download.value.path()).read_bytes()[:4] == b"\x89PNG"

    # The funnel nests: each step no larger than the one before.
    counts = [int(c) for c in page.locator("#funnel-chart rect.step").evaluate_all(
        "rects => rects.map(r => r.dataset.count)")]  # fmt: skip
    assert len(counts) == 4 and counts[0] >= counts[1] >= counts[2] >= counts[3] > 0
    page.screenshot(path=str(DOCS / "analytics-compare-providers.png"), full_page=True)

    # The analytics page at the same size: no bar per provider (ranked comparison instead),
    # the weekly chart downloads as PNG, and every rate's definition is on both pages.
    page.goto(f"{live_server.url}/analytics/?group_by=provider")
    assert page.title() == "Analytics · Careline"
    assert "420 providers are too many to draw" in page.get_by_test_id(
        "too-many-to-draw").inner_text()  # fmt: skip
    assert page.locator("svg.chart").count() == 0
    page.goto(f"{live_server.url}/analytics/?group_by=week")
    assert page.locator("svg.chart rect").count() == 26
    with page.expect_download() as download:
        page.locator("button[data-png-of='dashboard-chart']").click()
    assert Path(download.value.path()).read_bytes()[:4] == b"\x89PNG"
    terms = page.get_by_test_id("glossary").locator("dt").all_inner_texts()
    assert {"No-show rate", "Reply rate", "Confirmation rate"} <= set(terms)
    page.screenshot(path=str(DOCS / "analytics-dashboard-72-practices.png"), full_page=True)
    page.goto(f"{live_server.url}/analytics/compare/")
    assert page.get_by_test_id("glossary").locator("dt").all_inner_texts() == terms
