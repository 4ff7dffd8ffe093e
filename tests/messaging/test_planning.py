import threading
import time as time_module
from datetime import datetime, time, timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.messaging.models import MessageState, OutboundMessage, ReminderRule
from careline.messaging.planning import plan_all_reminders, sync_reminders
from careline.scheduling.appointments import book_appointment, change_status, move_appointment
from careline.scheduling.models import Appointment
from tests.messaging.conftest import Clinic


def local_noon(clinic, days_ahead: int) -> datetime:
    day = timezone.now().astimezone(clinic.practice.zone).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(12), tzinfo=clinic.practice.zone)


def live(appointment) -> list[tuple[str, datetime]]:
    return sorted(
        OutboundMessage.objects.filter(appointment=appointment)
        .exclude(state=MessageState.CANCELLED)
        .values_list("step_key", "visit_start")
    )


def book(clinic, start, **kw):
    return book_appointment(
        patient=kw.pop("patient", None) or clinic.patient(),
        provider=clinic.provider,
        practice=clinic.practice,
        appointment_type=clinic.visit_type,
        start=start,
        check_working_time=False,
    )


def test_booking_plans_a_notice_and_the_default_cadence_once(clinic):
    start = local_noon(clinic, 10)
    appointment = book(clinic, start)
    rows = OutboundMessage.objects.filter(appointment=appointment)
    by_step = {m.step_key: m for m in rows}
    assert set(by_step) == {"booked", "reminder:4320", "reminder:1440"}
    assert by_step["reminder:4320"].due_at == start - timedelta(hours=72)
    assert by_step["reminder:1440"].due_at == start - timedelta(hours=24)
    assert by_step["reminder:1440"].expires_at == start
    assert by_step["booked"].priority < by_step["reminder:1440"].priority
    assert all(m.to_address == appointment.patient.mobile_phone for m in rows)
    assert all(m.sender == clinic.org.default_sender_number for m in rows)

    before = sorted(OutboundMessage.objects.values_list("id", "state", "due_at"))
    sync_reminders([appointment.id])
    sync_reminders([appointment.id, appointment.id])
    plan_all_reminders()
    assert sorted(OutboundMessage.objects.values_list("id", "state", "due_at")) == before


def test_moving_cancels_the_old_times_reminders_and_plans_new_ones(clinic):
    appointment = book(clinic, local_noon(clinic, 10))
    new_start = local_noon(clinic, 12)
    move_appointment(appointment, new_start=new_start, check_working_time=False)
    old = OutboundMessage.objects.filter(appointment=appointment, visit_start=appointment.start)
    assert set(old.values_list("state", "reason")) == {("cancelled", "appointment_moved")}
    assert live(appointment) == [
        ("reminder:1440", new_start),
        ("reminder:4320", new_start),
        ("rescheduled", new_start),
    ]
    # Moving back to the first time plans that time's reminders again, once.
    move_appointment(appointment, new_start=appointment.start, check_working_time=False)
    move_appointment(appointment, new_start=appointment.start, check_working_time=False)
    assert [k for k, v in live(appointment)] == ["reminder:1440", "reminder:4320", "rescheduled"]
    assert {v for k, v in live(appointment)} == {appointment.start}


def test_cancelling_cancels_reminders_and_plans_a_cancellation_notice(clinic):
    appointment = book(clinic, local_noon(clinic, 10))
    change_status(appointment, "cancelled", source="staff")
    change_status(Appointment.objects.get(pk=appointment.pk), "cancelled", source="staff")
    sync_reminders([appointment.id])
    assert [k for k, _ in live(appointment)] == ["cancelled"]
    reasons = set(
        OutboundMessage.objects.filter(appointment=appointment, state="cancelled").values_list(
            "reason", flat=True
        )
    )
    assert reasons == {"appointment_cancelled"}


def test_confirmation_stops_reminders_unless_the_rule_says_otherwise(clinic):
    appointment = book(clinic, local_noon(clinic, 10))
    change_status(appointment, "confirmed", source="patient_text")
    assert [k for k, _ in live(appointment)] == ["booked"]
    ReminderRule.objects.create(
        organization=clinic.org, offsets_minutes=[1440], stop_when_confirmed=False
    )
    sync_reminders([appointment.id])
    assert [k for k, _ in live(appointment)] == ["booked", "reminder:1440"]


def test_the_most_specific_rule_wins_and_rule_changes_replan(clinic):
    other_type = clinic.build.appointment_type(clinic.org)
    ReminderRule.objects.create(organization=clinic.org, offsets_minutes=[2880])
    ReminderRule.objects.create(
        organization=clinic.org, practice=clinic.practice, offsets_minutes=[120, 1440]
    )
    type_rule = ReminderRule.objects.create(
        organization=clinic.org, appointment_type=other_type, offsets_minutes=[10080]
    )
    plain = clinic.appointment(local_noon(clinic, 10))
    special = clinic.appointment(local_noon(clinic, 10), appointment_type=other_type)
    other_practice = clinic.build.practice(clinic.org)
    elsewhere = clinic.appointment(local_noon(clinic, 10), practice=other_practice)
    plan_all_reminders()
    assert [k for k, _ in live(plain)] == ["reminder:120", "reminder:1440"]
    assert [k for k, _ in live(special)] == ["reminder:10080"]
    assert [k for k, _ in live(elsewhere)] == ["reminder:2880"]

    type_rule.offsets_minutes = []
    type_rule.save()
    plan_all_reminders()
    assert live(special) == []
    assert OutboundMessage.objects.get(appointment=special).reason == "rule_changed"


def test_no_reminder_is_planned_in_the_past_or_without_an_address(clinic):
    soon = clinic.appointment(timezone.now() + timedelta(hours=30))
    no_contact = clinic.appointment(
        local_noon(clinic, 10), patient=clinic.patient(mobile_phone="", email="")
    )
    email_only = clinic.appointment(
        local_noon(clinic, 10), patient=clinic.patient(mobile_phone="", email="a@example.org")
    )
    plan_all_reminders()
    assert [k for k, _ in live(soon)] == ["reminder:1440"]
    assert live(no_contact) == []
    assert set(
        OutboundMessage.objects.filter(appointment=email_only).values_list("channel", "to_address")
    ) == {("email", "a@example.org")}


appointment_specs = st.lists(
    st.tuples(
        st.integers(min_value=-3 * 24, max_value=20 * 24),  # hours from now
        st.sampled_from(["booked", "confirmed", "cancelled", "fulfilled", "noshow"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=appointment_specs, moves=st.lists(st.integers(min_value=1, max_value=100), max_size=4))
def test_exactly_one_live_message_per_planned_reminder(build, specs, moves):
    clinic = Clinic(build)  # a fresh organization per example
    now = timezone.now()
    appointments = [
        clinic.appointment(now + timedelta(hours=h, minutes=1), status=s) for h, s in specs
    ]
    plan_all_reminders()
    for i, hours in enumerate(moves):
        a = appointments[i % len(appointments)]
        a.start += timedelta(hours=hours)
        a.end += timedelta(hours=hours)
        a.save()
    sync_reminders([a.id for a in appointments])
    plan_all_reminders()
    sync_reminders([a.id for a in appointments])
    now = timezone.now()
    for a in appointments:
        a.refresh_from_db()
        rows = live(a)
        reminder_rows = [(k, v) for k, v in rows if k.startswith("reminder:")]
        assert len(reminder_rows) == len(set(reminder_rows))
        assert all(v == a.start for _, v in rows if _ != "cancelled")
        if a.status not in ("booked", "confirmed") or a.status == "confirmed":
            assert reminder_rows == []
        else:
            expected = {
                f"reminder:{m}" for m in (4320, 1440) if a.start - timedelta(minutes=m) > now
            }
            # A reminder whose time passed while we planned may already be in.
            assert {k for k, _ in reminder_rows} >= expected - {
                f"reminder:{m}"
                for m in (4320, 1440)
                if a.start - timedelta(minutes=m) > now - timedelta(minutes=1)
                and a.start - timedelta(minutes=m) <= now + timedelta(minutes=1)
            }
            for key, _ in reminder_rows:
                assert int(key.split(":")[1]) in (4320, 1440)


def test_changes_made_behind_its_back_get_the_first_reason_that_holds(clinic):
    """An import or an EHR feed can change many visits in one statement; re-planning then
    gives each stale message one reason, checked in order: moved before cancelled before
    closed, and confirmed only for reminders of a visit that is still on."""
    moved_and_cancelled = book(clinic, local_noon(clinic, 10))
    cancelled = book(clinic, local_noon(clinic, 11))
    closed = book(clinic, local_noon(clinic, 12))
    confirmed = book(clinic, local_noon(clinic, 13))
    untouched = book(clinic, local_noon(clinic, 14))
    later = timedelta(days=5)
    Appointment.objects.filter(pk=moved_and_cancelled.pk).update(
        start=F("start") + later, end=F("end") + later, status="cancelled"
    )
    Appointment.objects.filter(pk=cancelled.pk).update(status="cancelled")
    Appointment.objects.filter(pk=closed.pk).update(status="noshow")
    Appointment.objects.filter(pk=confirmed.pk).update(status="confirmed")
    plan_all_reminders()

    def reasons(appointment) -> dict[str, str]:
        rows = OutboundMessage.objects.filter(
            appointment=appointment, visit_start=appointment.start
        )
        return dict(rows.values_list("step_key", "reason"))

    assert reasons(moved_and_cancelled) == {
        "booked": "appointment_moved",
        "reminder:4320": "appointment_moved",
        "reminder:1440": "appointment_moved",
    }
    assert reasons(cancelled) == {
        "booked": "appointment_cancelled",
        "reminder:4320": "appointment_cancelled",
        "reminder:1440": "appointment_cancelled",
    }
    assert reasons(closed) == {
        "booked": "appointment_closed",
        "reminder:4320": "appointment_closed",
        "reminder:1440": "appointment_closed",
    }
    # The booking notice still goes out; only the reminders stop.
    assert reasons(confirmed) == {
        "booked": "",
        "reminder:4320": "confirmed",
        "reminder:1440": "confirmed",
    }
    assert set(reasons(untouched).values()) == {""}


@pytest.mark.django_db(transaction=True)
def test_two_syncs_of_one_visit_at_once_plan_each_message_once(clinic):
    """A feed and a staff member touching the same visit at the same moment: the second
    sync waits for the first and then adds nothing, instead of failing on the unique
    constraint with the first one's messages."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer in at a time, so the syncs cannot overlap")
    appointment = clinic.appointment(local_noon(clinic, 10))
    first_planned = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                sync_reminders([appointment.id])
                first_planned.set()
                # Commit only once the second sync is waiting on these uncommitted rows.
                with connection.cursor() as cursor:
                    for _ in range(200):
                        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                        if cursor.fetchone()[0]:
                            break
                        time_module.sleep(0.05)
                    else:
                        raise AssertionError("the second sync never waited for the first")
        except BaseException as exc:
            errors.append(exc)
            first_planned.set()
        finally:
            connections.close_all()

    def second() -> None:
        try:
            first_planned.wait(timeout=30)
            with transaction.atomic():
                sync_reminders([appointment.id])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    start = appointment.start
    assert live(appointment) == sorted(
        [("booked", start), ("reminder:1440", start), ("reminder:4320", start)]
    )
