"""`careline demo`: a small synthetic organization that looks and behaves like the real one."""

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from careline.clinics.models import Organization, Practice, Provider
from careline.clinics.validators import normalize_phone
from careline.demo.generator import DEMO_PASSWORD, DemoError, DemoOptions, generate_demo
from careline.messaging.models import MessageState, OutboundMessage
from careline.patients.models import Patient
from careline.scheduling.models import (
    OCCUPYING_STATUSES,
    Appointment,
    AppointmentStatus,
    ChangeSource,
    Holiday,
    RecurringBreak,
    WorkingHours,
)

# Fixed, and a few days after the US spring DST change, so history spans both offsets.
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
SMALL = DemoOptions(practices=3, providers=10, patients=300, appointments=2000)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def small_demo(db):
    return generate_demo(SMALL, now=NOW)


def test_requested_sizes_and_practices_in_several_time_zones(small_demo):
    org = small_demo.organization
    assert Practice.objects.filter(organization=org).count() == 3
    assert Provider.objects.filter(organization=org).count() == 10
    assert Patient.objects.filter(organization=org).count() == 300
    assert Appointment.objects.filter(organization=org).count() == 2000
    assert small_demo.appointments == 2000
    assert len(set(Practice.objects.values_list("time_zone", flat=True))) >= 2
    assert all(p.go_live_date and p.go_live_date < NOW.date() for p in Practice.objects.all())
    for provider in Provider.objects.all():
        assert provider.practices.exists()
        weekdays = set(provider.working_hours.values_list("weekday", flat=True))
        assert weekdays, provider
        lunches = set(provider.breaks.filter(label="Lunch").values_list("weekday", flat=True))
        assert lunches == weekdays - {5}  # Saturday mornings have no lunch break
    assert Holiday.objects.filter(name="Independence Day").count() == 3


def test_appointments_fit_working_hours_and_never_overlap(small_demo):
    practices = {p.id: p for p in Practice.objects.all()}
    hours = defaultdict(list)
    for wh in WorkingHours.objects.all():
        hours[(wh.provider_id, wh.practice_id, wh.weekday)].append((wh.start_time, wh.end_time))
    lunch = {
        (b.provider_id, b.practice_id, b.weekday): (b.start_time, b.end_time)
        for b in RecurringBreak.objects.all()
    }
    closed = set(Holiday.objects.values_list("practice_id", "date"))
    by_provider = defaultdict(list)
    for appt in Appointment.objects.all():
        zone = practices[appt.practice_id].zone
        start, end = appt.start.astimezone(zone), appt.end.astimezone(zone)
        key = (appt.provider_id, appt.practice_id, start.weekday())
        assert (appt.practice_id, start.date()) not in closed
        assert any(s <= start.time() and end.time() <= e for s, e in hours[key]), appt
        if key in lunch:
            assert end.time() <= lunch[key][0] or start.time() >= lunch[key][1]
        if appt.status in OCCUPYING_STATUSES:
            by_provider[appt.provider_id].append((appt.start, appt.end))
    for visits in by_provider.values():
        visits.sort()
        for (_, previous_end), (next_start, _) in zip(visits, visits[1:], strict=False):
            assert next_start >= previous_end


def test_statuses_times_and_outcomes_are_plausible(small_demo):
    appts = list(Appointment.objects.all())
    past = [a for a in appts if a.start <= NOW]
    upcoming = [a for a in appts if a.start > NOW]
    assert 0.02 < len(upcoming) / len(appts) < 0.12
    assert {a.status for a in past} <= {
        AppointmentStatus.FULFILLED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.CANCELLED,
    }
    upcoming_statuses = Counter(a.status for a in upcoming)
    assert set(upcoming_statuses) <= {
        AppointmentStatus.BOOKED,
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.CANCELLED,
    }
    assert (
        upcoming_statuses[AppointmentStatus.BOOKED]
        > upcoming_statuses[AppointmentStatus.CONFIRMED]
        > 0
    )
    counts = Counter(a.status for a in past)
    attended = counts[AppointmentStatus.FULFILLED] + counts[AppointmentStatus.NO_SHOW]
    assert 0.10 <= counts[AppointmentStatus.NO_SHOW] / attended <= 0.25
    assert 0.01 <= counts[AppointmentStatus.CANCELLED] / len(past) <= 0.08
    for a in appts:
        assert a.status_source == ChangeSource.DEMO
        assert a.created_at <= min(a.start, NOW)
        assert a.created_at <= a.status_changed_at <= NOW
        if a.confirmed_at is not None:
            assert a.confirmed_at < a.start
            assert a.confirmed_at.date() >= a.practice.go_live_date


def test_patients_speak_spanish_share_family_phones_and_have_valid_numbers(small_demo):
    patients = list(Patient.objects.all())
    spanish = sum(p.preferred_language == "es" for p in patients) / len(patients)
    assert 0.10 <= spanish <= 0.32
    phones = Counter(p.mobile_phone for p in patients if p.mobile_phone)
    sharing = sum(n for n in phones.values() if n > 1) / len(patients)
    assert 0.04 <= sharing <= 0.20
    assert 0 < sum(not p.mobile_phone for p in patients) < 0.08 * len(patients)
    practice_numbers = set(Practice.objects.values_list("phone", flat=True))
    for number in phones:
        assert normalize_phone(number) == number
        assert number[5:8] == "555"  # fictional exchange
        assert number not in practice_numbers
    assert len({p.mrn for p in patients}) == len(patients)
    assert all(p.birth_date and p.birth_date < NOW.date() for p in patients)


def test_planted_effects_show_in_the_data(db):
    generate_demo(
        DemoOptions(practices=6, providers=24, patients=2000, appointments=12000), now=NOW
    )
    rates = defaultdict(lambda: [0, 0])
    for appt in Appointment.objects.filter(
        status__in=[AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW]
    ).select_related("practice", "patient"):
        lead_days = (appt.start - appt.created_at).days
        reminded = (
            bool(appt.patient.mobile_phone)
            and lead_days >= 1
            and appt.start.astimezone(appt.practice.zone).date() >= appt.practice.go_live_date
        )
        groups = ["long lead" if lead_days > 45 else "short lead" if lead_days < 2 else "mid"]
        if lead_days >= 1 and appt.patient.mobile_phone:
            groups.append("reminded" if reminded else "before go-live")
        if reminded:
            groups.append("confirmed" if appt.confirmed_at else "unconfirmed")
        for group in groups:
            rates[group][0] += 1
            rates[group][1] += appt.status == AppointmentStatus.NO_SHOW
    rate = {group: missed / total for group, (total, missed) in rates.items()}
    assert 0.6 < rate["reminded"] / rate["before go-live"] < 0.95
    assert rate["confirmed"] < 0.5 * rate["unconfirmed"]
    assert rate["long lead"] > 1.3 * rate["short lead"]


def test_same_seed_same_data_other_seed_other_data(db):
    def outline(slug: str) -> list[tuple]:
        org = Organization.objects.get(slug=slug)
        return list(
            Appointment.objects.filter(organization=org)
            .order_by("start", "provider__display_name")
            .values_list("start", "status", "patient__mrn")
        )

    options = DemoOptions(practices=2, providers=4, patients=100, appointments=300)
    generate_demo(options, now=NOW)
    generate_demo(DemoOptions(**{**options.__dict__, "organization_slug": "twin"}), now=NOW)
    generate_demo(
        DemoOptions(**{**options.__dict__, "organization_slug": "other", "seed": 7}), now=NOW
    )
    assert outline(options.organization_slug) == outline("twin")
    assert outline(options.organization_slug) != outline("other")


def test_if_empty_loads_once_and_a_taken_slug_is_a_clear_error(db):
    sizes = ["--practices", "2", "--providers", "4", "--patients", "80", "--appointments", "300"]
    out = StringIO()
    call_command("demo", *sizes, "--if-empty", "--verbosity", "0", stdout=out)
    assert "password: careline-demo" in out.getvalue()
    assert "demo-frontdesk" in out.getvalue()
    counts = (Organization.objects.count(), Appointment.objects.count())
    assert counts == (1, 300)
    # The upcoming visits got their reminders planned, and the summary says how many.
    planned = int(re.search(r"([\d,]+) reminder messages", out.getvalue()).group(1))
    assert planned == OutboundMessage.objects.filter(state=MessageState.SCHEDULED).count() > 0
    again = StringIO()
    call_command("demo", *sizes, "--if-empty", "--verbosity", "0", stdout=again)
    assert "no demo data loaded" in again.getvalue()
    assert (Organization.objects.count(), Appointment.objects.count()) == counts
    with pytest.raises(CommandError, match="already exists"):
        call_command("demo", *sizes, "--verbosity", "0", stdout=StringIO())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DemoOptions(practices=3, providers=2), "--providers must be at least --practices"),
        (DemoOptions(practices=0), "--practices must be at least 1"),
        (DemoOptions(practices=1, providers=1, appointments=50_000), "do not fit"),
        (DemoOptions(appointments=-1), "cannot be negative"),
    ],
)
def test_impossible_sizes_are_refused_with_a_reason(db, options, message):
    with pytest.raises(DemoError, match=message):
        generate_demo(options, now=NOW)
    assert not Organization.objects.exists()


def test_demo_logins_work_and_the_admin_is_scoped(small_demo, client):
    by_user = {login.username: login for login in small_demo.logins}
    assert set(by_user) == {"demo-admin", "demo-manager", "demo-frontdesk"}
    visible = {}
    for username in by_user:
        client.logout()
        assert client.login(username=username, password=DEMO_PASSWORD)
        assert client.get("/", follow=True).status_code == 200  # each role's own home
        response = client.get("/admin/clinics/practice/")
        if response.status_code == 200:
            visible[username] = response.context["cl"].result_count
        else:  # the admin is for organization admins
            assert response["Location"].startswith("/admin/login/")
    assert visible == {"demo-admin": 3}
