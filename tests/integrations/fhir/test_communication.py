"""Texts in both directions as Communication resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle

from careline.clinics.directory import appointment_type_for_code
from careline.conversations.models import InboundMessage
from careline.messaging.models import MessageState, OutboundMessage
from careline.scheduling.external import upsert_external_appointment
from careline.scheduling.models import ChangeSource
from tests.integrations.fhir.conftest import outcome

T0 = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def texts(build, org):
    practice = build.practice(org)
    provider = build.provider(practice)
    patient = build.patient(org)
    appointment = upsert_external_appointment(
        organization=org,
        practice=practice,
        provider=provider,
        patient=patient,
        appointment_type=appointment_type_for_code(org, code="V"),
        start=T0,
        end=T0 + timedelta(minutes=20),
        status="booked",
        source=ChangeSource.FHIR,
    ).appointment
    OutboundMessage.objects.filter(appointment=appointment).delete()
    sent = OutboundMessage.objects.create(
        organization=org,
        practice=practice,
        patient=patient,
        appointment=appointment,
        to_address=patient.mobile_phone,
        body="Reminder: visit Tue 10:00. Reply C to confirm.",
        kind="reminder",
        due_at=T0 - timedelta(days=1),
        created_at=T0 - timedelta(days=2),
        state=MessageState.DELIVERED,
        sent_at=T0 - timedelta(days=1),
        finished_at=T0 - timedelta(days=1) + timedelta(seconds=5),
    )
    suppressed = OutboundMessage.objects.create(
        organization=org,
        patient=patient,
        appointment=appointment,
        kind="reminder",
        due_at=T0 - timedelta(hours=2),
        created_at=T0 - timedelta(days=2),
        state=MessageState.SUPPRESSED,
        reason="opted_out",
    )
    received = InboundMessage.objects.create(
        provider_message_id="SM1",
        from_phone=patient.mobile_phone,
        to_phone=practice.texting_number,
        body="C",
        received_at=T0 - timedelta(hours=20),
        organization=org,
        practice=practice,
        appointment=appointment,
    )
    received.patients.add(patient)
    stranger = build.organization()
    OutboundMessage.objects.create(
        organization=stranger, kind="broadcast", due_at=T0, created_at=T0, body="x"
    )
    return practice, patient, appointment, sent, suppressed, received


@pytest.mark.django_db
def test_outbound_and_inbound_texts_read_as_communications(fhir, texts):
    practice, patient, appointment, sent, suppressed, received = texts
    out = fhir.get(f"Communication/out-{sent.pk}").json()
    assert out["status"] == "completed"
    assert out["recipient"] == [{"reference": f"Patient/{patient.pk}"}]
    assert out["about"] == [{"reference": f"Appointment/{appointment.pk}"}]
    assert out["payload"][0]["contentString"].startswith("Reminder")
    not_done = fhir.get(f"Communication/out-{suppressed.pk}").json()
    assert (not_done["status"], not_done["statusReason"]["text"]) == ("not-done", "opted_out")
    inbound = fhir.get(f"Communication/in-{received.pk}").json()
    assert inbound["sender"] == {"reference": f"Patient/{patient.pk}"}
    assert inbound["recipient"] == [{"reference": f"Location/{practice.pk}"}]

    def ids(**params):
        bundle = fhir.get("Communication", **params).json()
        Bundle.model_validate(bundle)
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    assert ids(recipient=f"Patient/{patient.pk}") == [f"out-{sent.pk}", f"out-{suppressed.pk}"]
    assert ids(sender=f"Patient/{patient.pk}") == [f"in-{received.pk}"]
    assert ids(about=f"Appointment/{appointment.pk}", status="completed") == [
        f"out-{sent.pk}",
        f"in-{received.pk}",
    ]
    assert inbound["about"] == [{"reference": f"Appointment/{appointment.pk}"}]
    assert len(ids(patient=f"Patient/{patient.pk}")) == 3
    assert ids(patient=f"Patient/{patient.pk}", _count="2", _offset="2") == [f"in-{received.pk}"]
    # Another organization's broadcast is not in this organization's view.
    assert fhir.get("Communication").json()["total"] == 3
    response = fhir.post("Communication", {"resourceType": "Communication", "status": "completed"})
    assert response.status_code == 405 and "read-only" in outcome(response)
    assert fhir.get("Communication/sms-1").status_code == 404
