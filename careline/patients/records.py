"""Writes patient records. Every door that creates or updates a patient (a feed, a CSV
import, an online booking, FHIR, the staff page's admin) comes through here, so the
rules for a patient's identity and contact details are applied once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from careline.patients.models import Patient
from careline.patients.time_zones import zones_for_number

BATCH = 1000


def create_patient(*, organization_id: int, **fields: Any) -> Patient:
    return Patient.objects.create(organization_id=organization_id, **fields)


def update_patient(patient: Patient, **fields: Any) -> Patient:
    """Apply the fields that differ; writes nothing when none do."""
    changed = [k for k, v in fields.items() if getattr(patient, k) != v]
    for key in changed:
        setattr(patient, key, fields[key])
    if changed:
        patient.save(update_fields=changed)
    return patient


def import_patients(new: list[Patient], changed: list[Patient], fields: Iterable[str]) -> None:
    """A file import's patients, written in batches: `new` inserted, `changed` updated.
    Bulk writes skip `Patient.save`, so the number's zones are derived here."""
    fields = list(fields)
    for patient in new:
        patient.time_zones = zones_for_number(patient.mobile_phone)
    if "mobile_phone" in fields:
        for patient in changed:
            patient.time_zones = zones_for_number(patient.mobile_phone)
        fields.append("time_zones")
    Patient.objects.bulk_create(new, batch_size=BATCH)
    if changed:
        Patient.objects.bulk_update(changed, fields, batch_size=BATCH // 2)


def set_home_practice_if_none(patient: Patient, practice_id: int) -> None:
    """The first practice a patient is seen at becomes their home practice."""
    if patient.home_practice_id is None:
        Patient.objects.filter(pk=patient.pk, home_practice__isnull=True).update(
            home_practice_id=practice_id
        )
        patient.home_practice_id = practice_id
