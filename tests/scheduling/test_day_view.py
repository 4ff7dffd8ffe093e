"""The front desk's day: visits in local time, reply states, arrived / no-show, call list."""

from datetime import date, datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.patients.consent import record_consent
from careline.scheduling.appointments import book_appointment, change_status
from careline.scheduling.models import AppointmentStatus

DAY = date(2026, 12, 2)


@pytest.fixture
def desk(build):
    practice = build.practice(time_zone="America/Chicago", name="Riverside Clinic")
    other = build.practice(practice.organization, name="Elsewhere Clinic")
    provider = build.provider(practice, display_name="Dr. Lee")
    kind = build.appointment_type(practice.organization, patient_facing_name="Checkup")
    org = practice.organization

    def book(hh, mm=0, **patient_kw):
        return book_appointment(
            patient=build.patient(org, **patient_kw),
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=datetime.combine(DAY, time(hh, mm), tzinfo=practice.zone),
        )

    appts = {
        "confirmed": book(9, given_name="Ana"),
        "plain": book(9, 20, given_name="Ben"),
        "nomobile": book(9, 40, given_name="Cy", mobile_phone=""),
        "optedout": book(10, given_name="Dee", mobile_phone="+15125550777"),
    }
    change_status(appts["confirmed"], AppointmentStatus.CONFIRMED, source="patient_text")
    record_consent(
        organization_id=org.id,
        phone="+15125550777",
        opted_out=True,
        source="patient_text",
        detail="STOP",
    )
    user = build.staff(org, StaffRole.FRONT_DESK, practices=[practice])
    other_provider = build.provider(other)
    foreign = book_appointment(
        patient=build.patient(org),
        provider=other_provider,
        practice=other,
        appointment_type=kind,
        start=datetime.combine(DAY, time(11), tzinfo=other.zone),
    )
    return {"practice": practice, "other": other, "user": user, "appts": appts, "foreign": foreign}


def test_day_view_lists_visits_in_local_time_with_reply_states(client, desk):
    client.force_login(desk["user"])
    url = reverse("scheduling:day", args=[desk["practice"].id, DAY.isoformat()])
    response = client.get(url)
    assert response.status_code == 200
    rows = {r.appointment.patient.given_name: r for r in response.context["rows"]}
    assert [r.local_start.strftime("%H:%M") for r in response.context["rows"]] == [
        "09:00",
        "09:20",
        "09:40",
        "10:00",
    ]
    assert rows["Ana"].reply_state == "confirmed"
    # Nothing has been sent to Ben yet (his booking notice waits in the outbox).
    assert rows["Ben"].reply_state == "not texted yet"
    assert rows["Cy"].reply_state == "no mobile"
    assert rows["Dee"].reply_state == "opted out"
    assert "9:00 AM" in response.content.decode()


def test_mark_arrived_and_no_show_with_htmx(client, desk):
    client.force_login(desk["user"])
    ben = desk["appts"]["plain"]
    url = reverse("scheduling:set_status", args=[ben.id])
    response = client.post(url, {"status": "noshow"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'data-status="noshow"' in response.content.decode()
    ben.refresh_from_db()
    assert ben.status == AppointmentStatus.NO_SHOW
    assert ben.events.last().changed_by == desk["user"]
    # A no-show who turns up late can still be marked arrived.
    client.post(url, {"status": "arrived"}, HTTP_HX_REQUEST="true")
    ben.refresh_from_db()
    assert ben.status == AppointmentStatus.ARRIVED


def test_refused_transition_shows_a_message_not_an_error_page(client, desk):
    client.force_login(desk["user"])
    appt = desk["appts"]["plain"]
    change_status(appt, AppointmentStatus.CANCELLED, source="staff")
    response = client.post(
        reverse("scheduling:set_status", args=[appt.id]),
        {"status": "arrived"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "Cannot change a cancelled appointment" in response.content.decode()
    bogus = client.post(
        reverse("scheduling:set_status", args=[appt.id]),
        {"status": "cancelled"},
        HTTP_HX_REQUEST="true",
    )
    assert "Unknown action" in bogus.content.decode()


def test_other_practice_is_not_found_by_url_or_form(client, desk):
    client.force_login(desk["user"])
    assert (
        client.get(reverse("scheduling:day", args=[desk["other"].id, DAY.isoformat()])).status_code
        == 404
    )
    assert client.get(reverse("scheduling:call_list", args=[desk["other"].id])).status_code == 404
    response = client.post(
        reverse("scheduling:set_status", args=[desk["foreign"].id]), {"status": "noshow"}
    )
    assert response.status_code == 404
    desk["foreign"].refresh_from_db()
    assert desk["foreign"].status == AppointmentStatus.BOOKED


def test_call_list_has_tomorrows_unconfirmed(client, desk, build, monkeypatch):
    practice = desk["practice"]
    fake_now = datetime.combine(DAY - timedelta(days=1), time(15), tzinfo=practice.zone)
    monkeypatch.setattr(timezone, "now", lambda: fake_now)
    client.force_login(desk["user"])
    response = client.get(reverse("scheduling:call_list", args=[practice.id]))
    names = [r.appointment.patient.given_name for r in response.context["rows"]]
    # Ben has not been texted yet: his reminder will ask him first.
    assert names == ["Cy", "Dee"]


def test_patient_page_is_audited_and_scoped(client, desk):
    from careline.audit.models import AuditEvent

    client.force_login(desk["user"])
    dee = desk["appts"]["optedout"].patient
    response = client.get(reverse("patients:detail", args=[dee.id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "opted out" in body and "STOP" in body
    assert AuditEvent.objects.filter(user=desk["user"], patient=dee, action="view").count() == 1
    foreign_patient = desk["foreign"].patient
    assert client.get(reverse("patients:detail", args=[foreign_patient.id])).status_code == 404


def test_high_risk_confirmed_visit_is_on_the_call_list(client, desk, monkeypatch):
    practice = desk["practice"]
    fake_now = datetime.combine(DAY - timedelta(days=1), time(15), tzinfo=practice.zone)
    monkeypatch.setattr(timezone, "now", lambda: fake_now)
    ana = desk["appts"]["confirmed"]
    ana.noshow_risk = 0.42
    ana.save(update_fields=["noshow_risk"])
    client.force_login(desk["user"])
    rows = client.get(reverse("scheduling:call_list", args=[practice.id])).context["rows"]
    reasons = {r.appointment.patient.given_name: r.reply_state for r in rows}
    assert reasons["Ana"] == "confirmed; high no-show risk (42%)"
    # Ben, not texted yet, is left to his reminder.
    assert set(reasons) == {"Ana", "Cy", "Dee"}


def test_day_view_call_list_and_admin_patient_page_are_audited(client, build, desk):
    from careline.audit.models import AuditEvent

    client.force_login(desk["user"])
    practice = desk["practice"]
    client.get(reverse("scheduling:day", args=[practice.id, DAY.isoformat()]))
    client.get(reverse("scheduling:call_list", args=[practice.id]))
    patient = desk["appts"]["plain"].patient
    # The admin is for organization admins: the front desk is refused (nothing to audit),
    # and an organization admin's look at the patient's page is audited.
    url = reverse("admin:patients_patient_change", args=[patient.id])
    assert client.get(url).status_code in (302, 403)
    org_admin = build.staff(practice.organization, StaffRole.ORGANIZATION_ADMIN)
    client.force_login(org_admin)
    assert client.get(url).status_code == 200

    def events(user):
        return list(
            AuditEvent.objects.filter(user=user)
            .order_by("id")
            .values_list("what", "practice_id", "patient_id")
        )

    assert events(desk["user"]) == [
        (f"day view {DAY.isoformat()}", practice.id, None),
        ("call list", practice.id, None),
    ]
    assert events(org_admin) == [("admin patient page", None, patient.id)]
