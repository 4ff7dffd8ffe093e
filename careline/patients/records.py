"""Writes patient records. Every door that creates or updates a patient (a feed, a CSV
import, an online booking, FHIR, the staff page's admin) comes through here, so the
rules for a patient's identity and contact details are applied once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F

from careline.patients.models import Patient, PatientVersion
from careline.versions import change_stamp, snapshot, stamp

BATCH = 1000


def create_patient(*, organization_id: int, **fields: Any) -> Patient:
    return save_patient(Patient(organization_id=organization_id, **fields))


def save_patient(patient: Patient, update_fields: list[str] | None = None) -> Patient:
    """Save a new or changed patient as its next version (FHIR's versionId/lastUpdated)."""
    with transaction.atomic():
        new = patient.pk is None
        stamp(patient)
        if update_fields is not None and not new:
            update_fields = [*update_fields, "version", "last_updated"]
        patient.save(force_insert=new, update_fields=update_fields)
        PatientVersion.objects.create(
            patient=patient,
            version=patient.version,
            last_updated=patient.last_updated,
            fields=snapshot(patient),
        )
    return patient


def update_patient(patient: Patient, **fields: Any) -> Patient:
    """Apply the fields that differ; writes nothing when none do."""
    changed = [k for k, v in fields.items() if getattr(patient, k) != v]
    for key in changed:
        setattr(patient, key, fields[key])
    if changed:
        save_patient(patient, update_fields=changed)
    return patient


def import_patients(new: list[Patient], changed: list[Patient], fields: Iterable[str]) -> None:
    """A file import's patients, written in batches: `new` inserted, `changed` updated, each
    as its next version with one change time (one UPDATE per batch bumps the versions).
    Bulk writes skip `Patient.save`, so the derived fields (zones, phones) are set here."""
    fields = list(fields)
    for patient in [*new, *changed]:
        patient.derive()
    if {"mobile_phone", "state", "country"} & set(fields):
        fields.append("time_zones")
    if "mobile_phone" in fields:
        fields.append("phones")
    rows = [*new, *changed]
    if not rows:
        return
    with transaction.atomic():
        at = change_stamp(Patient, rows[0].organization_id)
        for patient in new:
            patient.version, patient.last_updated = 1, at
        Patient.objects.bulk_create(new, batch_size=BATCH)
        if changed:
            Patient.objects.bulk_update(changed, fields, batch_size=BATCH // 2)
            for start in range(0, len(changed), BATCH):
                ids = [p.pk for p in changed[start : start + BATCH]]
                Patient.objects.filter(pk__in=ids).update(version=F("version") + 1, last_updated=at)
                versions = dict(Patient.objects.filter(pk__in=ids).values_list("pk", "version"))
                for patient in changed[start : start + BATCH]:
                    patient.version, patient.last_updated = versions[patient.pk], at
        PatientVersion.objects.bulk_create(
            [
                PatientVersion(
                    patient_id=p.pk, version=p.version, last_updated=at, fields=snapshot(p)
                )
                for p in rows
            ],
            batch_size=BATCH,
        )


def set_home_practice_if_none(patient: Patient, practice_id: int) -> None:
    """The first practice a patient is seen at becomes their home practice."""
    if patient.home_practice_id is None:
        Patient.objects.filter(pk=patient.pk, home_practice__isnull=True).update(
            home_practice_id=practice_id
        )
        patient.home_practice_id = practice_id
