"""An organization with two EHR feeds shaped like the shared samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from careline.clinics.models import Organization, Practice
from careline.integrations.models import Hl7Feed

# Copied from ../shared/samples/hl7 so the suite runs from a bare checkout.
SHARED_SAMPLES = Path(__file__).resolve().parent / "samples"


def sample(name: str) -> str:
    """A shared sample exactly as stored (CR segment breaks; no newline translation)."""
    return (SHARED_SAMPLES / name).read_bytes().decode()


@dataclass
class FeedWorld:
    organization: Organization
    albany: Practice
    troy: Practice
    athena: Hl7Feed  # EHRNET, 2.3.1, bare MRN, provider in AIG, department 7 in AIL
    pms: Hl7Feed  # PMSYS, 2.3–2.5.1, MRN typed MR, TROYMAIN in AIL


@pytest.fixture
def feeds(build) -> FeedWorld:
    org = build.organization(slug="capital-health")
    albany = build.practice(
        org, code="ALB", name="North Albany Family Medicine", time_zone="America/New_York"
    )
    troy = build.practice(org, code="TROY", name="Troy Main Street", time_zone="America/New_York")
    athena = Hl7Feed.objects.create(
        organization=org,
        name="EHRNET",
        time_zone="America/New_York",
        mrn_identifier_type="",
        location_map={"7": "ALB"},
    )
    pms = Hl7Feed.objects.create(
        organization=org,
        name="PMSYS",
        time_zone="America/New_York",
        mrn_identifier_type="MR",
        mrn_assigning_authority="PMSYS",
        location_map={"TROYMAIN": "TROY"},
    )
    return FeedWorld(org, albany, troy, athena, pms)
