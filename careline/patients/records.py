"""Writes patient records. Every door that creates or updates a patient (a feed, a CSV
import, an online booking, FHIR, the staff page's admin) comes through here, so the
rules for a patient's identity and contact details are applied once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F

from careline.patients.identifiers import Identifier, distinct, identified_patients
from careline.patients.models import Patient, PatientIdentifier, PatientVersion
from careline.versions import change_stamp, snapshot, stamp

BATCH = 1000


class IdentifierConflict(Exception):
    """The identifiers name a patient other than the one being written: never merged
    silently. `taken` lists "system|value" of the identifiers another patient holds."""

    def __init__(self, other_patient_id: int, taken: list[str]):
        super().__init__(f"Patient {other_patient_id} already has {', '.join(taken)}")
        self.other_patient_id = other_patient_id
        self.taken = taken


def create_patient(
    *, organization_id: int, identifiers: Iterable[Identifier] = (), **fields: Any
) -> Patient:
    return add_patient(Patient(organization_id=organization_id, **fields), identifiers)


def add_patient(patient: Patient, identifiers: Iterable[Identifier] = ()) -> Patient:
    """A new patient with its identifiers, as its first version. The caller has checked
    that no other patient holds them (the unique constraint is the last word)."""
    with transaction.atomic():
        save_patient(patient)
        _add_identifiers(patient, distinct(identifiers))
    _forget_identifiers(patient)
    return patient


def add_patients(new: list[tuple[Patient, list[Identifier]]]) -> None:
    """New patients with their identifiers, each as its first version, written together
    in a few multi-row INSERTs (a feed's group of new bookings) rather than one
    `add_patient` each. The caller has checked that no patient holds the identifiers and
    that no two of the new ones share one (the unique constraint is the last word)."""
    by_organization: dict[int, list[tuple[Patient, list[Identifier]]]] = {}
    for patient, identifiers in new:
        by_organization.setdefault(patient.organization_id, []).append((patient, identifiers))
    # No savepoint of its own: a failure fails the caller's (the group's) savepoint.
    with transaction.atomic(savepoint=False):
        for rows in by_organization.values():
            import_patients([patient for patient, _ in rows], [], ())
        PatientIdentifier.objects.bulk_create(
            [
                PatientIdentifier(
                    organization_id=patient.organization_id,
                    patient=patient,
                    system=i.system,
                    value=i.value,
                    type_code=i.type_code,
                    type_text=i.type_text,
                )
                for patient, identifiers in new
                for i in distinct(identifiers)
            ],
            batch_size=BATCH,
        )


def keep_identifiers(
    patient: Patient,
    identifiers: Iterable[Identifier],
    *,
    replace_systems: bool = False,
    new_version: bool = True,
) -> bool:
    """Add the identifiers the patient does not have yet (types refreshed for those they
    do). With `replace_systems`, identifiers of the same systems that were not sent are
    dropped (a FHIR PUT restates the sender's identifiers; other systems' stay).

    IdentifierConflict when one belongs to another patient; nothing is written then.
    True when anything changed; the patient's next version is written then, unless
    `new_version` is False because the caller saves the patient next anyway.
    """
    identifiers = distinct(identifiers)
    others = {
        pid: keys
        for pid, keys in identified_patients(patient.organization_id, identifiers).items()
        if pid != patient.pk
    }
    if others:
        other_id = min(others)
        raise IdentifierConflict(other_id, others[other_id])
    with transaction.atomic():
        current = {(i.system, i.value): i for i in patient.identifiers.all()}
        changed = False
        new = [i for i in identifiers if i.key not in current]
        for identifier in identifiers:
            row = current.get(identifier.key)
            if row is not None and (row.type_code, row.type_text) != (
                identifier.type_code,
                identifier.type_text,
            ):
                PatientIdentifier.objects.filter(pk=row.pk).update(
                    type_code=identifier.type_code, type_text=identifier.type_text
                )
                changed = True
        if replace_systems:
            sent = {i.key for i in identifiers}
            systems = {i.system for i in identifiers}
            dropped = [
                row.pk for key, row in current.items() if key[0] in systems and key not in sent
            ]
            if dropped:
                PatientIdentifier.objects.filter(pk__in=dropped).delete()
                changed = True
        if new:
            _add_identifiers(patient, new)
            changed = True
        if changed and new_version:
            save_patient(patient, update_fields=[])
    _forget_identifiers(patient)
    return changed


def _forget_identifiers(patient: Patient) -> None:
    # A prefetched list would be rendered back to the caller as it was before the change.
    getattr(patient, "_prefetched_objects_cache", {}).pop("identifiers", None)


def _add_identifiers(patient: Patient, identifiers: list[Identifier]) -> None:
    PatientIdentifier.objects.bulk_create(
        [
            PatientIdentifier(
                organization_id=patient.organization_id,
                patient=patient,
                system=i.system,
                value=i.value,
                type_code=i.type_code,
                type_text=i.type_text,
            )
            for i in identifiers
        ]
    )


def import_identifiers(organization_id: int, by_patient: dict[int, list[Identifier]]) -> None:
    """A file import's identifiers for the patients it wrote, those not stored yet (the
    importer found its patients by them, so none belongs to another patient)."""
    wanted = [(pid, i) for pid, identifiers in by_patient.items() for i in identifiers]
    if not wanted:
        return
    existing: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), BATCH):
        chunk = [i for _, i in wanted[start : start + BATCH]]
        existing.update(
            PatientIdentifier.objects.filter(
                organization_id=organization_id,
                system__in={i.system for i in chunk},
                value__in={i.value for i in chunk},
            ).values_list("system", "value")
        )
    PatientIdentifier.objects.bulk_create(
        [
            PatientIdentifier(
                organization_id=organization_id,
                patient_id=pid,
                system=i.system,
                value=i.value,
                type_code=i.type_code,
                type_text=i.type_text,
            )
            for pid, i in wanted
            if i.key not in existing
        ],
        batch_size=BATCH,
    )


def merge_patients(prior: Patient, survivor: Patient) -> None:
    """An EHR merged `prior` into `survivor` (ADT^A40): the prior record's identifiers now
    name the survivor, and the prior record points at it. Visits and conversations are
    moved by their own owners; the caller does that in the same transaction."""
    with transaction.atomic():
        PatientIdentifier.objects.filter(patient=prior).update(patient=survivor)
        prior.merged_into = survivor
        save_patient(prior, update_fields=["merged_into"])
    _forget_identifiers(prior)
    _forget_identifiers(survivor)


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


def update_patient(patient: Patient, *, touched: bool = False, **fields: Any) -> Patient:
    """Apply the fields that differ; writes nothing when none do, unless `touched` (its
    identifiers changed: still a new version for FHIR clients that pull changes)."""
    changed = [k for k, v in fields.items() if getattr(patient, k) != v]
    for key in changed:
        setattr(patient, key, fields[key])
    if changed or touched:
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
    with transaction.atomic(savepoint=False):
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
