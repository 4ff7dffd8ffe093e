"""Setting up from nothing with the CLI: organization, practice, provider with working hours,
each safe to run again from a script, each refusing bad input by option name."""

from datetime import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from careline.clinics.models import OfficeHours, Practice, Provider
from careline.clinics.office_hours import practice_week
from careline.scheduling.models import WorkingHours


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def org(db):
    run("organization", "add", "valley-health", "--name", "Valley Health")
    return "valley-health"


PRACTICE = (
    "practice", "add", "RIV", "--organization", "valley-health", "--name", "Riverside Clinic",
    "--time-zone", "America/Denver", "--sender-number", "(303) 555-0142", "--phone",
    "303-555-0100", "--address", "1 River Rd, Denver, CO", "--office-hours",
    "Mon-Fri 08:00-17:00; Sat 09:00-12:00",
)  # fmt: skip


def test_practice_add_is_idempotent_and_updates_only_what_is_given(org):
    assert run(*PRACTICE).strip() == "Practice RIV (Riverside Clinic): added."
    practice = Practice.objects.get(code="RIV")
    assert (practice.time_zone, practice.sender_number, practice.phone) == (
        "America/Denver", "+13035550142", "+13035550100")  # fmt: skip
    week = practice_week(practice)
    assert week[0] == (time(8), time(17)) and week[5] == (time(9), time(12)) and week[6] is None
    version = practice.version
    assert run(*PRACTICE).strip() == "Practice RIV (Riverside Clinic): unchanged."
    practice.refresh_from_db()
    assert practice.version == version and OfficeHours.objects.count() == 1

    out = run("practice", "add", "RIV", "--organization", org, "--name", "Riverside Family")
    assert out.strip() == "Practice RIV (Riverside Family): updated."
    practice.refresh_from_db()
    assert practice.name == "Riverside Family" and practice.time_zone == "America/Denver"
    assert practice.version == version + 1  # FHIR Location's next version
    assert "RIV  Riverside Family  America/Denver  +13035550142" in run(
        "practice", "list", "--organization", org)  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--time-zone", "Mars/Olympus"), "--time-zone"),
        (("--sender-number", "12"), "--sender-number"),
        (("--office-hours", "weekdays 9-5"), "--office-hours"),
        (("--office-hours", "Mon-Fri 17:00-08:00"), "closes before it opens"),
    ],
)
def test_bad_practice_input_names_the_option_and_saves_nothing(org, extra, message):
    with pytest.raises(CommandError, match=message):
        run("practice", "add", "NEW", "--organization", org, "--name", "New", *extra)
    assert not Practice.objects.filter(code="NEW").exists()


def test_a_new_practice_needs_a_name_and_an_existing_organization(org):
    with pytest.raises(CommandError, match="--name"):
        run("practice", "add", "NEW", "--organization", org)
    with pytest.raises(CommandError, match="Did you mean 'valley-health'"):
        run("practice", "add", "NEW", "--organization", "valley-healt", "--name", "X")


def test_a_number_another_organization_texts_from_is_refused(org):
    run(*PRACTICE)
    run("organization", "add", "hill-care", "--name", "Hill Care")
    with pytest.raises(CommandError, match="--sender-number: .*another organization"):
        run("practice", "add", "HIL", "--organization", "hill-care", "--name", "Hill",
            "--sender-number", "+13035550142")  # fmt: skip
    assert not Practice.objects.filter(code="HIL").exists()


def test_provider_add_with_working_hours_is_idempotent(org):
    run(*PRACTICE)
    run("practice", "add", "EST", "--organization", org, "--name", "Eastside")
    hours = "Mon-Thu 08:00-16:00; Fri 08:00-12:00"
    args = ("provider", "add", "--organization", org, "--name", "Dr. Ana Lee", "--npi",
            "1234567893", "--practice", "RIV", "--hours", hours)  # fmt: skip
    assert run(*args).strip() == "Provider Dr. Ana Lee: added."
    provider = Provider.objects.get(npi="1234567893")
    hours = sorted(
        WorkingHours.objects.filter(provider=provider).values_list(
            "practice__code", "weekday", "start_time", "end_time")
    )  # fmt: skip
    assert hours == [("RIV", d, time(8), time(16)) for d in range(4)] + [
        ("RIV", 4, time(8), time(12))
    ]
    assert run(*args).strip() == "Provider Dr. Ana Lee: unchanged."
    assert WorkingHours.objects.filter(provider=provider).count() == 5

    # Found again by NPI: a new name and a second practice with its own hours.
    out = run("provider", "add", "--organization", org, "--name", "Dr. Ana Lee-Park", "--npi",
              "1234567893", "--practice", "EST", "--hours", "Sat 09:00-13:00")  # fmt: skip
    assert out.strip() == "Provider Dr. Ana Lee-Park: updated."
    provider.refresh_from_db()
    assert sorted(provider.practices.values_list("code", flat=True)) == ["EST", "RIV"]
    assert WorkingHours.objects.filter(provider=provider, practice__code="EST").count() == 1
    assert WorkingHours.objects.filter(provider=provider, practice__code="RIV").count() == 5
    assert Provider.objects.count() == 1
    assert "Dr. Ana Lee-Park  1234567893  EST, RIV" in run(
        "provider", "list", "--organization", org)  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--practice", "NOPE"), "--practice: no practice has the code NOPE .*known: RIV"),
        (("--npi", "12345"), "--npi"),
        (("--practice", "RIV", "--hours", "Funday 08:00-09:00"), "--hours"),
        (("--hours", "Mon 08:00-09:00"), "--hours: name the practice"),
    ],
)
def test_bad_provider_input_names_the_option_and_saves_nothing(org, extra, message):
    run(*PRACTICE)
    with pytest.raises(CommandError, match=message):
        run("provider", "add", "--organization", org, "--name", "Dr. New", *extra)
    assert not Provider.objects.exists() and not WorkingHours.objects.exists()
