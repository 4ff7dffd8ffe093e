"""Reading patients' identifiers: which patient a (system, value) names.

Written only by `patients.records`; every door (HL7, FHIR, CSV) finds patients here so the
rule "a patient is a value in a system, never a bare MRN" is applied once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from careline.patients.models import PatientIdentifier, default_identifier_system

__all__ = ["Identifier", "default_identifier_system", "identified_patients", "identifier_q"]

MAX_SYSTEM = 255
MAX_VALUE = 128
# HL7 table 0203 codes that mean "medical record number" (Epic sends "MRN" as text).
MRN_TYPES = frozenset({"MR", "MRN"})


@dataclass(frozen=True)
class Identifier:
    """An identifier as it arrived: its system (a URI), value and type."""

    system: str
    value: str
    type_code: str = ""
    type_text: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.value)

    @property
    def is_mrn(self) -> bool:
        return bool(
            self.type_code.upper() in MRN_TYPES or self.type_text.strip().upper() in MRN_TYPES
        )


def distinct(identifiers: Iterable[Identifier]) -> list[Identifier]:
    """One identifier per (system, value), the first sent winning."""
    seen: dict[tuple[str, str], Identifier] = {}
    for identifier in identifiers:
        seen.setdefault(identifier.key, identifier)
    return list(seen.values())


def identifier_q(identifiers: Iterable[Identifier]) -> Q:
    q = Q(pk__in=[])
    for identifier in identifiers:
        q |= Q(system=identifier.system, value=identifier.value)
    return q


def identified_patients(organization_id: int, identifiers: Iterable[Identifier]) -> dict[int, list]:
    """The patients any of the identifiers names: patient id → the identifiers naming them.

    More than one key means the identifiers name different people; callers refuse that
    rather than guess. A merged patient's identifiers belong to the survivor.
    """
    identifiers = list(identifiers)
    if not identifiers:
        return {}
    found: dict[int, list] = {}
    rows = PatientIdentifier.objects.filter(
        identifier_q(identifiers), organization_id=organization_id
    ).values_list("patient_id", "system", "value")
    for patient_id, system, value in rows:
        found.setdefault(patient_id, []).append(f"{system}|{value}")
    return found


def mrn_copy(identifiers: Iterable[Identifier]) -> str:
    """The value shown as the patient's MRN: the first MR-typed identifier, else the first."""
    identifiers = list(identifiers)
    for identifier in identifiers:
        if identifier.is_mrn:
            return identifier.value[:64]
    return identifiers[0].value[:64] if identifiers else ""
