"""Quiet hours are kept in the patient's time (their number's area code), not only the
practice's: a patient three zones west is never texted at 6 a.m. local. The worker runs
with a fixed clock; patients arrive through the doors (FHIR, CSV) and the builders."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from careline.integrations.api_keys import issue_api_key
from careline.messaging.compliance import DEFER, SEND, Facts, SendingHours, decide
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageState, OutboundMessage, SimulatedPhoneMessage
from careline.messaging.planning import plan_all_reminders
from careline.patients.models import Patient

from .conftest import Clinic

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LOS_ANGELES = zoneinfo.ZoneInfo("America/Los_Angeles")
BOISE = zoneinfo.ZoneInfo("America/Boise")


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def run_at(at: datetime) -> None:
    Dispatcher(SimulatorGateway(), clock=Clock(at)).run_once()


def local(zone, days_ahead: int, hour: int, minute: int = 0) -> datetime:
    day = timezone.now().astimezone(zone).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


def texts_to(phone: str) -> int:
    return SimulatedPhoneMessage.objects.filter(to=phone).count()


def day_before_reminder(appointment) -> OutboundMessage:
    return OutboundMessage.objects.get(appointment=appointment, step_key="reminder:1440")


def test_a_patient_three_zones_west_is_not_texted_at_dawn(build):
    clinic = Clinic(build, time_zone="America/New_York")
    west = clinic.patient(mobile_phone="+14155550123")  # San Francisco
    east = clinic.patient(mobile_phone="+12125550123")  # New York
    visit = local(NEW_YORK, 5, 10)  # the 24 h reminder is due at 10:00 New York, 7:00 SF
    west_visit = clinic.appointment(visit, patient=west)
    east_visit = clinic.appointment(visit, patient=east)
    plan_all_reminders()

    run_at(visit - timedelta(days=1, minutes=-1))
    assert texts_to(east.mobile_phone) == 1
    assert texts_to(west.mobile_phone) == 0
    waiting = day_before_reminder(west_visit)
    assert waiting.state == MessageState.SCHEDULED and waiting.reason == ""
    assert waiting.due_at == local(LOS_ANGELES, 4, 8)  # 8:00 in San Francisco
    run_at(waiting.due_at)
    assert texts_to(west.mobile_phone) == 1
    assert day_before_reminder(east_visit).state == MessageState.DELIVERED


def test_a_patient_east_of_the_practice_is_not_texted_late_at_night(build):
    clinic = Clinic(build, time_zone="America/Los_Angeles")
    east = clinic.patient(mobile_phone="+12125550124")
    visit = local(LOS_ANGELES, 5, 19)  # due 19:00 in Los Angeles: 22:00 in New York
    appointment = clinic.appointment(visit, patient=east)
    plan_all_reminders()
    run_at(visit - timedelta(days=1, minutes=-1))
    assert texts_to(east.mobile_phone) == 0
    assert day_before_reminder(appointment).due_at == local(NEW_YORK, 5, 8)


def test_an_area_code_in_two_zones_keeps_the_hours_of_both(build):
    # 208 (Idaho) spans Mountain and Pacific time: texts go out from 8:00 Pacific (9:00
    # Mountain) to 21:00 Mountain (20:00 Pacific).
    clinic = Clinic(build, time_zone="America/Boise")
    patient = clinic.patient(mobile_phone="+12085550125")
    assert patient.time_zones == "America/Boise America/Los_Angeles"
    morning = clinic.appointment(local(BOISE, 5, 8, 30), patient=patient)
    evening = clinic.appointment(local(BOISE, 6, 20, 30), patient=patient)
    plan_all_reminders()

    run_at(local(BOISE, 4, 8, 31))  # 8:31 Mountain, 7:31 Pacific
    assert texts_to(patient.mobile_phone) == 0
    assert day_before_reminder(morning).due_at == local(BOISE, 4, 9)
    run_at(local(BOISE, 5, 20, 31))  # 20:31 Mountain: inside both windows
    assert day_before_reminder(evening).state == MessageState.DELIVERED
    late = clinic.appointment(local(BOISE, 7, 21, 15), patient=patient)
    plan_all_reminders()
    run_at(local(BOISE, 6, 21, 16))  # 21:16 Mountain: after the earliest evening
    assert day_before_reminder(late).due_at == local(BOISE, 7, 9)


@pytest.mark.parametrize("number", ["+18005550126", "+15555550126"])
def test_a_number_that_says_nothing_of_where_it_is_keeps_the_practices_hours(build, number):
    clinic = Clinic(build, time_zone="America/New_York")
    patient = clinic.patient(mobile_phone=number)  # toll-free; no such area code
    assert patient.time_zones == ""
    visit = local(NEW_YORK, 5, 8, 30)
    appointment = clinic.appointment(visit, patient=patient)
    plan_all_reminders()
    run_at(visit - timedelta(days=1, minutes=-1))
    assert day_before_reminder(appointment).state == MessageState.DELIVERED


def test_the_zone_follows_the_number_through_fhir(build):
    clinic = Clinic(build, time_zone="America/New_York")
    fhir = Client()
    key = issue_api_key(organization_slug=clinic.org.slug, name="tests").plaintext
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/fhir+json"}
    resource = {
        "resourceType": "Patient",
        "name": [{"family": "Reyes", "given": ["Ana"]}],
        "telecom": [{"system": "sms", "value": "(212) 555-0127"}],
    }
    created = fhir.post(
        "/fhir/R4/Patient", json.dumps(resource), "application/fhir+json", headers=headers
    )
    assert created.status_code == 201, created.content
    patient = Patient.objects.get(pk=created.json()["id"])
    assert patient.time_zones == "America/New_York"

    resource["id"] = str(patient.pk)
    resource["telecom"] = [{"system": "sms", "value": "(415) 555-0127"}]
    updated = fhir.put(
        f"/fhir/R4/Patient/{patient.pk}",
        json.dumps(resource),
        "application/fhir+json",
        headers=headers,
    )
    assert updated.status_code == 200, updated.content
    patient.refresh_from_db()
    assert patient.time_zones == "America/Los_Angeles"

    visit = local(NEW_YORK, 5, 10)
    appointment = clinic.appointment(visit, patient=patient)
    plan_all_reminders()
    run_at(visit - timedelta(days=1, minutes=-1))
    assert day_before_reminder(appointment).due_at == local(LOS_ANGELES, 4, 8)


def test_the_zone_follows_the_number_through_a_csv_import(build, tmp_path):
    clinic = Clinic(build, time_zone="America/New_York")
    header = "appointment_id,practice,provider,mrn,given_name,family_name,mobile_phone,start"
    start = local(NEW_YORK, 5, 10).strftime("%Y-%m-%d %H:%M")
    rows = {
        "first.csv": f"V1,{clinic.practice.code},{clinic.provider.display_name},M1,Ana,Lopez,"
        f"(415) 555-0128,{start}",
        "second.csv": f"V1,{clinic.practice.code},{clinic.provider.display_name},M1,Ana,Lopez,"
        f"(212) 555-0128,{start}",
    }
    zones = []
    for name, row in rows.items():
        path = tmp_path / name
        path.write_text(f"{header}\n{row}\n", encoding="utf-8")
        call_command("import-csv", str(path), "--organization", clinic.org.slug, "--no-progress")
        zones.append(Patient.objects.get(mrn="M1").time_zones)
    assert zones == ["America/Los_Angeles", "America/New_York"]


@given(
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(
        [
            ("America/Los_Angeles",),
            ("America/Boise", "America/Los_Angeles"),
            ("America/Denver", "America/North_Dakota/Center"),
            ("America/Adak", "America/Anchorage"),
            ("Pacific/Honolulu",),
        ]
    ),
)
def test_nothing_is_sent_outside_the_hours_of_any_of_the_phones_zones(now, names):
    zones = tuple(zoneinfo.ZoneInfo(n) for n in names)
    visit = now + timedelta(days=3)
    facts = Facts(
        kind="reminder", channel="sms", now=now, expires_at=visit, zone=NEW_YORK,
        has_address=True, patient_zones=zones, has_appointment=True,
        appointment_status="booked", appointment_start=visit, visit_start=visit,
    )  # fmt: skip
    decision = decide(facts, hours=SendingHours(8, 21), daily_cap=4)
    when = now if decision.action == SEND else decision.defer_until
    assert decision.action in (SEND, DEFER)
    for zone in zones:
        assert 8 <= when.astimezone(zone).hour < 21, (zone, when)
    if decision.action == DEFER:
        # The first moment every zone is open: a minute earlier, one of them is not.
        assert any(not 8 <= (when - timedelta(minutes=1)).astimezone(z).hour < 21 for z in zones)


def test_a_california_address_outranks_a_colorado_number_through_fhir(build):
    # Issue 20: quiet hours in the patient's zone "from their address or area code".
    clinic = Clinic(build, time_zone="America/New_York")
    fhir = Client()
    key = issue_api_key(organization_slug=clinic.org.slug, name="tests").plaintext
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/fhir+json"}
    resource = {
        "resourceType": "Patient",
        "name": [{"family": "Reyes", "given": ["Ana"]}],
        "telecom": [{"system": "sms", "value": "(303) 555-0129"}],
        "address": [{"use": "home", "city": "Fresno", "state": "California"}],
    }
    created = fhir.post(
        "/fhir/R4/Patient", json.dumps(resource), "application/fhir+json", headers=headers
    )
    assert created.status_code == 201, created.content
    patient = Patient.objects.get(pk=created.json()["id"])
    assert patient.time_zones == "America/Los_Angeles"

    visit = local(NEW_YORK, 5, 10)  # due 10:00 New York: 8:00 Denver, 7:00 Pacific
    appointment = clinic.appointment(visit, patient=patient)
    plan_all_reminders()
    run_at(visit - timedelta(days=1, minutes=-1))
    assert texts_to(patient.mobile_phone) == 0
    waiting = day_before_reminder(appointment)
    assert waiting.due_at == local(LOS_ANGELES, 4, 8)
    run_at(waiting.due_at)
    assert texts_to(patient.mobile_phone) == 1


def test_the_state_column_of_a_csv_import_sets_the_zone(build, tmp_path):
    clinic = Clinic(build, time_zone="America/New_York")
    header = "appointment_id,practice,provider,mrn,given_name,family_name,mobile_phone,state,start"
    start = local(NEW_YORK, 5, 10).strftime("%Y-%m-%d %H:%M")
    path = tmp_path / "with-state.csv"
    path.write_text(
        f"{header}\nV9,{clinic.practice.code},{clinic.provider.display_name},M9,Ana,Lopez,"
        f"(303) 555-0130,CA,{start}\n",
        encoding="utf-8",
    )
    call_command("import-csv", str(path), "--organization", clinic.org.slug, "--no-progress")
    patient = Patient.objects.get(mrn="M9")
    assert (patient.state, patient.time_zones) == ("CA", "America/Los_Angeles")
    assert patient.phones == [{"system": "phone", "use": "mobile", "value": "+13035550130"}]
