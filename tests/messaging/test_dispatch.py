from datetime import datetime, time, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from careline import background
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.base import (
    GatewayError,
    OutgoingSms,
    SendResult,
    SmsGateway,
    StatusUpdate,
)
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageState, OutboundMessage, SimulatedPhoneMessage
from careline.messaging.outbox import apply_status_update, queue_reply
from careline.messaging.planning import plan_all_reminders, sync_reminders
from careline.messaging.segments import count_segments
from careline.patients.consent import record_consent
from careline.patients.models import PhoneConsent


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def local(clinic, days_ahead: int, hour: int, minute: int = 0) -> datetime:
    day = timezone.now().astimezone(clinic.practice.zone).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(hour, minute), tzinfo=clinic.practice.zone)


def run_at(at: datetime, gateway=None, **kw) -> Dispatcher:
    dispatcher = Dispatcher(gateway or SimulatorGateway(), clock=Clock(at), **kw)
    dispatcher.run_once()
    return dispatcher


def phone_texts(number: str) -> list[str]:
    return list(SimulatedPhoneMessage.objects.filter(to=number).values_list("body", flat=True))


def test_reminders_go_out_at_their_time_with_the_local_visit_time(clinic):
    patient = clinic.patient(given_name="Rosa")
    visit = local(clinic, 5, 9, 30)
    appointment = clinic.appointment(visit, patient=patient)
    plan_all_reminders()
    run_at(visit - timedelta(hours=72, minutes=1))
    assert phone_texts(patient.mobile_phone) == []
    run_at(visit - timedelta(hours=72) + timedelta(minutes=1))
    texts = phone_texts(patient.mobile_phone)
    assert len(texts) == 1
    assert texts[0].startswith("Rosa: reminder of your visit at " + clinic.practice.name)
    assert "9:30 AM" in texts[0] and "Reply C to confirm, X to cancel, R to reschedule" in texts[0]
    assert clinic.build and appointment.patient.family_name not in texts[0]
    message = OutboundMessage.objects.get(step_key="reminder:4320")
    assert message.state == MessageState.DELIVERED
    assert message.segments == count_segments(texts[0]).segments >= 1
    assert message.provider_message_id and message.sent_at


def test_spanish_patients_get_spanish_texts(clinic):
    patient = clinic.patient(given_name="Luis", preferred_language="es")
    clinic.appointment(local(clinic, 5, 15), patient=patient)
    plan_all_reminders()
    run_at(local(clinic, 4, 15, 1))
    assert phone_texts(patient.mobile_phone)[0].startswith("Luis: le recordamos su cita en")
    assert "3:00 p.m." in phone_texts(patient.mobile_phone)[0]


def test_no_text_to_an_opted_out_number(clinic):
    patient = clinic.patient()
    clinic.appointment(local(clinic, 5, 12), patient=patient)
    plan_all_reminders()
    record_consent(
        organization_id=clinic.org.id, phone=patient.mobile_phone, opted_out=True, source="staff"
    )
    run_at(local(clinic, 4, 12, 5))
    assert phone_texts(patient.mobile_phone) == []
    assert OutboundMessage.objects.get(step_key="reminder:1440").reason == "opted_out"


def test_no_text_at_night_it_waits_for_the_morning(clinic):
    patient = clinic.patient()
    clinic.appointment(local(clinic, 5, 6, 30), patient=patient)  # 24 h reminder due 6:30
    plan_all_reminders()
    run_at(local(clinic, 4, 6, 31))
    message = OutboundMessage.objects.get(step_key="reminder:1440")
    assert message.state == MessageState.SCHEDULED
    assert message.due_at == local(clinic, 4, 8)
    assert phone_texts(patient.mobile_phone) == []
    run_at(local(clinic, 4, 8, 0))
    assert len(phone_texts(patient.mobile_phone)) == 1


def test_no_text_for_a_cancelled_or_moved_visit_or_after_it_started(clinic):
    cancelled = clinic.appointment(local(clinic, 5, 12))
    moved = clinic.appointment(local(clinic, 5, 12))
    started = clinic.appointment(local(clinic, 4, 12))
    plan_all_reminders()
    # Changed behind the planner's back (no sync): the gate still catches it.
    cancelled.status = "cancelled"
    cancelled.save()
    moved.start += timedelta(days=1)
    moved.end += timedelta(days=1)
    moved.save()
    OutboundMessage.objects.filter(appointment=started).update(expires_at=None)
    run_at(local(clinic, 4, 12, 1))
    reasons = dict(
        OutboundMessage.objects.filter(step_key="reminder:1440").values_list(
            "appointment_id", "reason"
        )
    )
    assert reasons == {
        cancelled.id: "appointment_cancelled",
        moved.id: "appointment_moved",
        started.id: "visit_started",
    }
    assert SimulatedPhoneMessage.objects.count() == 0


def test_expired_messages_are_suppressed_not_sent_late(clinic):
    clinic.appointment(local(clinic, 5, 12))
    plan_all_reminders()
    run_at(local(clinic, 5, 12, 30))  # the gateway was down until after the visit
    assert set(OutboundMessage.objects.values_list("state", "reason")) == {
        ("suppressed", "expired")
    }


def test_a_family_sharing_a_phone_gets_one_reminder_per_day(clinic):
    mother = clinic.patient(mobile_phone="+15125550777")
    child = clinic.patient(mobile_phone="+15125550777")
    clinic.appointment(local(clinic, 5, 10), patient=mother)
    clinic.appointment(local(clinic, 5, 10, 20), patient=child)
    other_day = clinic.appointment(local(clinic, 6, 10), patient=child)
    plan_all_reminders()
    run_at(local(clinic, 4, 10, 30), batch_size=1)
    sent = OutboundMessage.objects.filter(step_key="reminder:1440").exclude(appointment=other_day)
    assert sorted(sent.values_list("state", "reason")) == [
        ("delivered", ""),
        ("suppressed", "shared_number"),
    ]
    assert SimulatedPhoneMessage.objects.filter(outbound_message__in=sent).count() == 1


def test_frequency_cap_per_patient(clinic):
    patient = clinic.patient()
    now = local(clinic, 1, 12)
    for _ in range(5):
        OutboundMessage.objects.create(
            organization=clinic.org, patient=patient, kind="broadcast", priority=30,
            to_address=patient.mobile_phone, body="News", due_at=now, created_at=now,
        )  # fmt: skip
    run_at(now, daily_cap=2, batch_size=2)
    assert (
        sorted(OutboundMessage.objects.values_list("state", "reason"))
        == [
            ("delivered", ""),
            ("delivered", ""),
        ]
        + [("suppressed", "frequency_cap")] * 3
    )


class FlakyGateway(SmsGateway):
    name = "flaky"

    def __init__(self, failures: list[GatewayError]):
        self.failures = list(failures)
        self.sent: dict[int, int] = {}
        self.lookups = 0

    def send(self, sms: OutgoingSms) -> SendResult:
        if self.failures:
            raise self.failures.pop(0)
        self.sent[sms.message_id] = self.sent.get(sms.message_id, 0) + 1
        return SendResult(f"SM{sms.message_id}", "sent")

    def find_sent(self, sms: OutgoingSms) -> SendResult | None:
        self.lookups += 1
        return SendResult(f"SM{sms.message_id}", "sent") if sms.message_id in self.sent else None


def test_transient_failures_retry_with_backoff_then_succeed(clinic):
    patient = clinic.patient()
    reply = queue_reply(organization_id=clinic.org.id, to_phone=patient.mobile_phone, body="Hi")
    gateway = FlakyGateway([GatewayError("busy", code="20429", transient=True)] * 2)
    t0 = timezone.now()
    run_at(t0, gateway)
    reply.refresh_from_db()
    assert (reply.state, reply.attempts, reply.error_code) == ("scheduled", 1, "20429")
    assert reply.next_attempt_at == t0 + timedelta(seconds=30)
    run_at(t0 + timedelta(seconds=29), gateway)
    assert OutboundMessage.objects.get(pk=reply.pk).attempts == 1  # not yet
    run_at(t0 + timedelta(seconds=30), gateway)
    reply.refresh_from_db()
    assert reply.next_attempt_at == t0 + timedelta(seconds=30 + 60)
    run_at(t0 + timedelta(seconds=90), gateway)
    reply.refresh_from_db()
    assert (reply.state, reply.attempts) == ("sent", 3)
    assert gateway.sent == {reply.pk: 1} and gateway.lookups == 2


def test_retries_follow_the_one_background_retry_schedule(clinic):
    """The dispatcher has no backoff of its own: it waits as careline.background.backoff
    says, 30 s doubling per attempt and never more than an hour."""
    patient = clinic.patient()
    reply = queue_reply(organization_id=clinic.org.id, to_phone=patient.mobile_phone, body="Hi")
    OutboundMessage.objects.filter(pk=reply.pk).update(attempts=8)
    gateway = FlakyGateway([GatewayError("busy", code="20429", transient=True)] * 2)
    t0 = timezone.now()
    run_at(t0, gateway, max_attempts=20)
    reply.refresh_from_db()
    assert (reply.state, reply.attempts) == ("scheduled", 9)
    assert reply.next_attempt_at == t0 + background.backoff(9) == t0 + timedelta(hours=1)
    assert [background.backoff(n) for n in (1, 2, 3)] == [
        timedelta(seconds=30),
        timedelta(minutes=1),
        timedelta(minutes=2),
    ]


def test_permanent_failure_records_the_code_and_21610_opts_the_number_out(clinic):
    patient = clinic.patient()
    reply = queue_reply(organization_id=clinic.org.id, to_phone=patient.mobile_phone, body="Hi")
    other = queue_reply(organization_id=clinic.org.id, to_phone="+15125550999", body="Hi")
    gateway = FlakyGateway(
        [
            GatewayError("unsubscribed", code="21610"),
            GatewayError("invalid", code="21211"),
        ]
    )
    run_at(timezone.now(), gateway, max_attempts=5)
    reply.refresh_from_db()
    other.refresh_from_db()
    assert (reply.state, reply.error_code, reply.attempts) == ("failed", "21610", 1)
    assert (other.state, other.error_code) == ("failed", "21211")
    assert PhoneConsent.objects.get(phone=patient.mobile_phone).opted_out
    assert not PhoneConsent.objects.filter(phone="+15125550999").exists()


def test_transient_failures_stop_after_max_attempts(clinic):
    reply = queue_reply(organization_id=clinic.org.id, to_phone="+15125550998", body="Hi")
    gateway = FlakyGateway([GatewayError("down", code="503", transient=True)] * 10)
    t = timezone.now()
    for _ in range(3):
        run_at(t, gateway, max_attempts=3)
        t += timedelta(minutes=5)
    reply.refresh_from_db()
    assert (reply.state, reply.attempts, reply.error_code) == ("failed", 3, "503")


def test_replies_go_before_reminders_before_broadcasts(clinic):
    patient = clinic.patient()
    clinic.appointment(local(clinic, 5, 12), patient=patient)
    plan_all_reminders()
    now = local(clinic, 4, 12, 30)
    OutboundMessage.objects.create(
        organization=clinic.org, kind="broadcast", priority=30, to_address="+15125550901",
        body="Closed Monday", due_at=now - timedelta(hours=5), created_at=now,
    )  # fmt: skip
    reply = queue_reply(organization_id=clinic.org.id, to_phone="+15125550902", body="Help text")
    OutboundMessage.objects.filter(pk=reply.pk).update(
        due_at=now, expires_at=now + timedelta(hours=1)
    )
    run_at(now, batch_size=1)
    order = list(
        SimulatedPhoneMessage.objects.order_by("id").values_list(
            "outbound_message__kind", flat=True
        )
    )
    assert order == ["reply", "reminder", "broadcast"]


def test_a_claimed_row_left_by_a_dead_worker_is_resent_only_if_the_provider_lacks_it(clinic):
    for _ in range(3):
        queue_reply(organization_id=clinic.org.id, to_phone=clinic.patient().mobile_phone, body="x")
    gateway = FlakyGateway([])
    now = timezone.now()
    dead = Dispatcher(gateway, clock=Clock(now), batch_size=10)
    claimed, _ = dead.claim_batch()
    # It reached the provider with the first one, then died before recording anything.
    gateway.send(dead.outgoing(claimed[0]))
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"sending"}
    # Within the lease nobody touches them.
    Dispatcher(gateway, clock=Clock(now + timedelta(seconds=10)), lease_seconds=60).run_once()
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"sending"}
    after = Dispatcher(gateway, clock=Clock(now + timedelta(seconds=61)), lease_seconds=60)
    after.run_once()
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"sent"}
    assert sorted(gateway.sent.values()) == [1, 1, 1]
    assert after.stats["reconciled_sent"] == 1 and after.stats["reconciled_requeued"] == 2


def test_status_updates_are_idempotent_and_forward_only(clinic):
    patient = clinic.patient()
    reply = queue_reply(organization_id=clinic.org.id, to_phone=patient.mobile_phone, body="x")
    run_at(timezone.now(), FlakyGateway([]))
    sid = f"SM{reply.pk}"
    assert apply_status_update(StatusUpdate(sid, "delivered"))
    assert not apply_status_update(StatusUpdate(sid, "delivered"))
    assert not apply_status_update(StatusUpdate(sid, "sent"))
    assert not apply_status_update(StatusUpdate(sid, "undelivered", "30003"))
    assert not apply_status_update(StatusUpdate("SMunknown", "delivered"))
    assert not apply_status_update(StatusUpdate(sid, "queued"))
    reply.refresh_from_db()
    assert reply.state == "delivered" and reply.finished_at


def test_status_update_21610_records_the_opt_out_once(clinic):
    patient = clinic.patient()
    reply = queue_reply(organization_id=clinic.org.id, to_phone=patient.mobile_phone, body="x")
    run_at(timezone.now(), FlakyGateway([]))
    assert apply_status_update(StatusUpdate(f"SM{reply.pk}", "failed", "21610"))
    assert not apply_status_update(StatusUpdate(f"SM{reply.pk}", "failed", "21610"))
    consent = PhoneConsent.objects.get(phone=patient.mobile_phone)
    assert consent.opted_out and consent.source == "provider_report"
    from careline.patients.models import ConsentEvent

    assert ConsentEvent.objects.filter(phone=patient.mobile_phone).count() == 1


def test_email_channel_for_patients_without_a_mobile_number(clinic):
    patient = clinic.patient(mobile_phone="", email="rosa@example.org", given_name="Rosa")
    clinic.appointment(local(clinic, 5, 12), patient=patient)
    plan_all_reminders()
    run_at(local(clinic, 4, 12, 1))
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["rosa@example.org"] and email.body.startswith("Hello Rosa,")
    ((name, content, mimetype),) = email.attachments
    assert name == "appointment.ics" and mimetype == "text/calendar"
    text = content.decode() if isinstance(content, bytes) else content
    assert "BEGIN:VEVENT" in text and "DTSTART" in text
    assert OutboundMessage.objects.get(step_key="reminder:1440").state == "sent"


@pytest.mark.parametrize("kind_is_reply", [True])
def test_sync_reminders_is_the_public_planning_entry(clinic, kind_is_reply):
    appointment = clinic.appointment(local(clinic, 5, 12))
    sync_reminders([appointment.id])
    assert OutboundMessage.objects.filter(appointment=appointment).count() == 3


def test_the_simulator_counts_a_second_send_of_the_same_message_instead_of_failing(clinic):
    reply = queue_reply(organization_id=clinic.org.id, to_phone="+15125550321", body="Hi")
    sms = OutgoingSms(reply.pk, "+15125550321", "+15125550100", "Hi", None)
    gateway = SimulatorGateway()
    assert gateway.find_sent(sms) is None
    first, second = gateway.send(sms), gateway.send(sms)
    assert first == second == gateway.find_sent(sms)
    phone = SimulatedPhoneMessage.objects.get()
    assert (phone.outbound_message_id, phone.body, phone.duplicate_sends) == (reply.pk, "Hi", 1)


def test_awkward_text_is_stored_and_sent_exactly(clinic):
    # Quotes, braces, commas, backslashes and non-GSM characters go through the worker's
    # bulk writes (arrays on PostgreSQL) unchanged.
    body = 'He said "yes", {ok} \\ C:\\path\n¿Mañana? 👍 NULL'
    patient = clinic.patient()
    reply = queue_reply(organization_id=clinic.org.id, to_phone=patient.mobile_phone, body=body)
    run_at(timezone.now())
    reply.refresh_from_db()
    assert phone_texts(patient.mobile_phone) == [body]
    assert (reply.state, reply.body, reply.segments) == ("delivered", body, 1)
    assert reply.provider_message_id == f"SIM{reply.pk:010d}" and reply.sent_at


def test_a_batch_is_claimed_and_recorded_in_a_fixed_number_of_statements(clinic, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from careline.messaging import dispatch

    monkeypatch.setattr(dispatch, "FLUSH_AFTER_SECONDS", 60)
    for i in range(30):
        queue_reply(organization_id=clinic.org.id, to_phone=f"+1512555{i:04d}", body=f"#{i}")
    with CaptureQueriesContext(connection) as queries:
        run_at(timezone.now(), batch_size=30)
    outbox_writes = [q["sql"] for q in queries if "UPDATE messaging_outboundmessage" in q["sql"]]
    # One write when the batch is claimed, one for the results: not one per message.
    assert len(outbox_writes) == 2
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"delivered"}
    assert SimulatedPhoneMessage.objects.count() == 30


class RecordingGateway(SimulatorGateway):
    """Notes, at each send, which earlier messages already have their provider id stored."""

    def __init__(self):
        self.recorded_before: list[int] = []

    def send(self, sms):
        self.recorded_before.append(OutboundMessage.objects.exclude(provider_message_id="").count())
        return super().send(sms)


def test_a_slow_gateway_has_each_result_written_before_the_next_send(clinic, monkeypatch):
    # A provider's status report can only find a message once its id is stored; results
    # are held back no longer than FLUSH_AFTER_SECONDS (here: not at all).
    from careline.messaging import dispatch

    for i in range(4):
        queue_reply(organization_id=clinic.org.id, to_phone=f"+1512556{i:04d}", body="x")
    monkeypatch.setattr(dispatch, "FLUSH_AFTER_SECONDS", 0)
    slow = RecordingGateway()
    run_at(timezone.now(), slow, batch_size=10)
    assert slow.recorded_before == [0, 1, 2, 3]
    OutboundMessage.objects.update(state="scheduled", provider_message_id="")
    SimulatedPhoneMessage.objects.all().delete()
    monkeypatch.setattr(dispatch, "FLUSH_AFTER_SECONDS", 60)
    fast = RecordingGateway()
    run_at(timezone.now(), fast, batch_size=10)
    assert fast.recorded_before == [0, 0, 0, 0]
    assert (
        OutboundMessage.objects.filter(state="delivered").exclude(provider_message_id="").count()
        == 4
    )


def test_a_worker_killed_before_recording_its_batch_causes_no_second_send(clinic, monkeypatch):
    from careline.messaging import dispatch

    monkeypatch.setattr(dispatch, "FLUSH_AFTER_SECONDS", 60)
    for i in range(5):
        queue_reply(organization_id=clinic.org.id, to_phone=f"+1512557{i:04d}", body=f"#{i}")
    now = timezone.now()
    dead = Dispatcher(SimulatorGateway(), clock=Clock(now), batch_size=10)
    claimed, _ = dead.claim_batch()
    for message in claimed[:3]:
        dead.deliver(message)  # sent, results held back; then the process dies
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"sending"}
    after = Dispatcher(
        SimulatorGateway(), clock=Clock(now + timedelta(seconds=61)), lease_seconds=60
    )
    after.run_once()
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"delivered"}
    assert (after.stats["reconciled_sent"], after.stats["reconciled_requeued"]) == (3, 2)
    assert SimulatedPhoneMessage.objects.count() == 5
    assert not SimulatedPhoneMessage.objects.exclude(duplicate_sends=0).exists()


def test_each_reminder_carries_its_own_working_link_saved_with_the_claim(clinic):
    from careline.selfservice.links import resolve

    first, second = clinic.patient(), clinic.patient()
    visits = [clinic.appointment(local(clinic, 5, 10 + n), patient=p) for n, p in
              enumerate([first, second])]  # fmt: skip
    plan_all_reminders()
    run_at(local(clinic, 2, 12))
    tokens = []
    for patient, visit in zip([first, second], visits, strict=True):
        (text,) = phone_texts(patient.mobile_phone)
        token = text.rsplit("/a/", 1)[1]
        assert resolve(token).appointment_id == visit.pk
        tokens.append(token)
    assert tokens[0] != tokens[1]


def test_a_template_without_a_link_issues_no_link(clinic):
    from careline.messaging.models import MessageTemplate
    from careline.selfservice.models import PatientLink

    MessageTemplate.objects.create(
        organization=clinic.org, kind="reminder", body="{first_name}: see you {date}."
    )
    patient = clinic.patient(given_name="Ana")
    clinic.appointment(local(clinic, 5, 10), patient=patient)
    plan_all_reminders()
    run_at(local(clinic, 2, 12))
    assert phone_texts(patient.mobile_phone)[0].startswith("Ana: see you ")
    assert not PatientLink.objects.exists()


def test_one_batch_takes_every_priority_in_order_oldest_first(clinic):
    now = local(clinic, 1, 12)  # within sending hours
    for kind, priority, hours_ago in [
        ("broadcast", 30, 9), ("broadcast", 30, 8), ("reply", 0, 1), ("reply", 0, 2),
    ]:  # fmt: skip
        OutboundMessage.objects.create(
            organization=clinic.org, kind=kind, priority=priority, to_address="+15125550901",
            body=kind, due_at=now - timedelta(hours=hours_ago), created_at=now,
            expires_at=now + timedelta(hours=1),
        )  # fmt: skip
    claimed, seen = Dispatcher(SimulatorGateway(), clock=Clock(now), batch_size=3).claim_batch()
    assert seen == 3
    assert [(m.kind, round((now - m.due_at).total_seconds() / 3600)) for m in claimed] == [
        ("reply", 2), ("reply", 1), ("broadcast", 9),
    ]  # fmt: skip
