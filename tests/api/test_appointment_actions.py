"""/api/v1/appointments/…: the front desk's acts for an integrator's key, on the same path as
the staff pages (history, texts, undo); every answer is checked against the OpenAPI document."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.scheduling import desk
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import AppointmentStatus, ChangeSource
from tests.api.conftest import error


@pytest.fixture
def clinic(build, org, practice):
    lee = build.provider(practice, weekdays=range(7), display_name="Dr. Lee")
    ruiz = build.provider(practice, weekdays=range(7), display_name="Dr. Ruiz")
    kind = build.appointment_type(org, minutes=20)
    day = (timezone.now().astimezone(practice.zone) + timedelta(days=3)).date()

    def at(hh: int, mm: int = 0) -> datetime:
        return datetime.combine(day, time(hh, mm), practice.zone)

    def visit(hh: int, provider=lee, where=practice):
        return book_appointment(
            patient=build.patient(org),
            provider=provider,
            practice=where,
            appointment_type=kind,
            start=at(hh),
        )

    return {"lee": lee, "ruiz": ruiz, "at": at, "visit": visit, "day": day}


def test_cancel_with_reason_then_undo(api, clinic):
    visit = clinic["visit"](10)
    path = f"appointments/{visit.id}/actions"
    missing = api.post(path, {"action": "cancel"})
    assert missing.status_code == 422 and "reason" in error(missing)["fields"]
    bad = api.post(path, {"action": "cancel", "reason": "x" * 151})
    assert bad.status_code == 422 and "reason" in error(bad)["fields"]

    done = api.post(path, {"action": "cancel", "reason": "Moving away"})
    assert done.status_code == 200
    body = done.json()
    assert body["appointment"]["status"] == "cancelled"
    change = body["change"]
    assert change["source"] == ChangeSource.FRONT_DESK and change["to_status"] == "cancelled"
    assert change["changed_by"].startswith("api-") and "Moving away" in change["note"]
    assert change["undo_until"] is not None
    notice = OutboundMessage.objects.get(appointment=visit, kind=MessageKind.CANCELLED)
    assert notice.state == MessageState.SCHEDULED

    undone = api.post(f"appointments/{visit.id}/undo", {"change_id": change["id"]})
    assert undone.status_code == 200
    assert undone.json()["appointment"]["status"] == "booked"
    assert undone.json()["change"]["undo_until"] is None
    notice.refresh_from_db()
    assert notice.state == MessageState.CANCELLED
    again = api.post(f"appointments/{visit.id}/undo", {"change_id": change["id"]})
    assert again.status_code == 422 and "change_id" in error(again)["fields"]
    twice = api.post(f"appointments/{visit.id}/undo")
    assert twice.status_code == 422 and "already undone" in error(twice)["message"]


def test_reschedule_to_an_open_time_and_back(api, clinic):
    visit = clinic["visit"](10)
    clinic["visit"](11)  # Dr. Lee's 11:00 is taken
    times = api.get(
        f"appointments/{visit.id}/open-times", **{"from": clinic["day"].isoformat(), "limit": "20"}
    )
    assert times.status_code == 200
    offered = {(datetime.fromisoformat(t["start"]), t["provider_id"]) for t in times.json()["data"]}
    assert (clinic["at"](9), clinic["lee"].id) in offered
    assert (clinic["at"](10), clinic["lee"].id) not in offered

    taken = api.post(
        f"appointments/{visit.id}/actions",
        {"action": "reschedule", "start": clinic["at"](11).isoformat()},
    )
    assert taken.status_code == 422 and "start" in error(taken)["fields"]
    naive = api.post(
        f"appointments/{visit.id}/actions", {"action": "reschedule", "start": "2030-01-01T09:00"}
    )
    assert naive.status_code == 422 and "start" in error(naive)["fields"]

    moved = api.post(
        f"appointments/{visit.id}/actions",
        {
            "action": "reschedule",
            "start": clinic["at"](11).isoformat(),
            "provider_id": clinic["ruiz"].id,
        },
    )
    assert moved.status_code == 200, moved.json()
    assert moved.json()["appointment"]["provider_id"] == clinic["ruiz"].id
    assert datetime.fromisoformat(moved.json()["change"]["old_start"]) == clinic["at"](10)

    back = api.post(f"appointments/{visit.id}/undo")
    assert back.status_code == 200
    visit.refresh_from_db()
    assert (visit.start, visit.provider_id) == (clinic["at"](10), clinic["lee"].id)
    assert not OutboundMessage.objects.filter(
        appointment=visit, kind=MessageKind.RESCHEDULED, state=MessageState.SCHEDULED
    ).exists()


def test_check_in_no_show_confirm_and_refusals(api, clinic):
    visit = clinic["visit"](9)
    path = f"appointments/{visit.id}/actions"
    assert api.post(path, {"action": "confirm"}).json()["appointment"]["status"] == "confirmed"
    assert api.post(path, {"action": "arrived"}).json()["appointment"]["status"] == "arrived"
    refused = api.post(path, {"action": "cancel", "reason": "late"})
    assert refused.status_code == 422 and "arrived" in error(refused)["message"]
    noshow = api.post(path, {"action": "noshow"})
    assert noshow.json()["appointment"]["status"] == "noshow"
    assert api.post(f"appointments/{visit.id}/undo").json()["appointment"]["status"] == "arrived"
    unknown = api.post(path, {"action": "delete"})
    assert unknown.status_code == 422 and "action" in error(unknown)["fields"]
    assert api.post(path, {}).status_code == 422
    extra = api.post(path, {"action": "confirm", "colour": "red"})
    assert extra.status_code == 422 and "colour" in error(extra)["fields"]
    assert api.get(f"appointments/{visit.id}").json()["status"] == "arrived"
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.ARRIVED


def test_another_organizations_visit_is_not_found(api, clinic, build):
    elsewhere = build.practice(build.organization(), name="Far Clinic")
    foreign = book_appointment(
        patient=build.patient(elsewhere.organization),
        provider=build.provider(elsewhere, weekdays=range(7)),
        practice=elsewhere,
        appointment_type=build.appointment_type(elsewhere.organization),
        start=clinic["at"](10),
    )
    assert api.get(f"appointments/{foreign.id}").status_code == 404
    assert api.post(f"appointments/{foreign.id}/actions", {"action": "noshow"}).status_code == 404
    assert api.post(f"appointments/{foreign.id}/undo").status_code == 404
    assert api.get(f"appointments/{foreign.id}/open-times").status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == AppointmentStatus.BOOKED


ACTION_BODIES = st.dictionaries(
    st.sampled_from(["action", "reason", "start", "provider_id", "change_id"])
    | st.text(max_size=6),
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([*desk.ACTIONS, "", "\x00", "2026-10-05T09:00:00+00:00", "2030-01-01"])
    | st.text(max_size=20),
    max_size=4,
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=ACTION_BODIES, undo=st.booleans())
def test_random_bodies_never_break_an_action_or_undo(api, clinic, body, undo):
    if "fuzzed" not in clinic:  # one visit for every example (the fixture is shared)
        clinic["fuzzed"] = clinic["visit"](12)
    path = f"appointments/{clinic['fuzzed'].id}/{'undo' if undo else 'actions'}"
    response = api.post(path, body)
    assert response.status_code in (200, 400, 422), response.json()


@FUZZ
@given(query=st.text(max_size=20), day=st.text(max_size=12) | st.just("2026-12-01"))
def test_random_queries_never_break_open_times(api, clinic, query, day):
    if "fuzzed" not in clinic:
        clinic["fuzzed"] = clinic["visit"](13)
    response = api.get(
        f"appointments/{clinic['fuzzed'].id}/open-times", **{"from": day, query or "x": "1"}
    )
    assert response.status_code in (200, 400)
