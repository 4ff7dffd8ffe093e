"""A visit held out of every reminder has no Communication in preparation; a usual one has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from careline.clinics.directory import appointment_type_for_code
from careline.messaging.experiments import arm_of, start_experiment
from careline.messaging.models import ExperimentArm
from careline.scheduling.external import upsert_external_appointment
from careline.scheduling.models import ChangeSource

T0 = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)


def test_held_out_visits_have_nothing_in_preparation(fhir, build, org):
    practice = build.practice(org)
    provider = build.provider(practice)
    experiment = start_experiment(
        organization_id=org.id,
        practice_id=None,
        name="Holdout",
        withheld_step="all",
        share_basis_points=5000,
    )
    booked, n = {}, 0
    while len(booked) < 2:
        n += 1
        patient = build.patient(org)
        start = T0 + timedelta(hours=n)
        visit = upsert_external_appointment(
            organization=org,
            practice=practice,
            provider=provider,
            patient=patient,
            appointment_type=appointment_type_for_code(org, code="V"),
            start=start,
            end=start + timedelta(minutes=20),
            status="booked",
            source=ChangeSource.FHIR,
        ).appointment
        booked.setdefault(arm_of(patient.id, experiment), visit)

    def planned(visit):
        bundle = fhir.get(
            "Communication", about=f"Appointment/{visit.pk}", status="preparation"
        ).json()
        return bundle["total"]

    assert planned(booked[ExperimentArm.WITHHELD]) == 0
    assert planned(booked[ExperimentArm.CONTROL]) >= 2  # the booking notice and reminders
