"""Shared builders for the clinic world every test needs."""

from __future__ import annotations

import itertools
import os
from datetime import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from hypothesis import settings as hypothesis_settings

from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
    StaffRole,
)
from careline.patients.models import Patient, PatientIdentifier, default_identifier_system
from careline.scheduling.models import WorkingHours

_seq = itertools.count(1)

# Tests run as `make run` does: with the simulator gateway unless the environment chooses
# one (settings only default to it with DEBUG on).
if not os.environ.get("CARELINE_SMS_GATEWAY"):
    django_settings.CARELINE_SMS_GATEWAY = "simulator"

# Property tests check what is true, not how fast: a loaded CI machine (two cores, a
# browser and a database server beside the tests) must not fail one on a slow example.
hypothesis_settings.register_profile("careline", deadline=None)
hypothesis_settings.load_profile("careline")


class ClinicBuilder:
    """Makes organizations, practices, providers and patients with sensible defaults."""

    def organization(self, **kw) -> Organization:
        n = next(_seq)
        kw.setdefault("name", f"Test Health {n}")
        kw.setdefault("slug", f"test-health-{n}")
        kw.setdefault("default_sender_number", "+15125550100")
        return Organization.objects.create(**kw)

    def practice(self, organization: Organization | None = None, **kw) -> Practice:
        n = next(_seq)
        kw.setdefault("name", f"Practice {n}")
        kw.setdefault("code", f"P{n}")
        kw.setdefault("time_zone", "America/Chicago")
        kw.setdefault("phone", "+15125550199")
        kw.setdefault("address", "100 Main St, Austin, TX")
        return Practice.objects.create(organization=organization or self.organization(), **kw)

    def provider(
        self,
        practice: Practice,
        hours: tuple[time, time] | None = (time(9), time(17)),
        weekdays=range(5),
        **kw,
    ) -> Provider:
        n = next(_seq)
        kw.setdefault("display_name", f"Dr. Test{n}")
        provider = Provider.objects.create(organization=practice.organization, **kw)
        provider.practices.add(practice)
        if hours:
            WorkingHours.objects.bulk_create(
                WorkingHours(
                    provider=provider,
                    practice=practice,
                    weekday=d,
                    start_time=hours[0],
                    end_time=hours[1],
                )
                for d in weekdays
            )
        return provider

    def appointment_type(
        self, organization: Organization, minutes: int = 20, **kw
    ) -> AppointmentType:
        n = next(_seq)
        kw.setdefault("code", f"T{n}")
        kw.setdefault("name", f"Visit {minutes}")
        kw.setdefault("patient_facing_name", "Office visit")
        return AppointmentType.objects.create(
            organization=organization, duration_minutes=minutes, **kw
        )

    def patient(self, organization: Organization, **kw) -> Patient:
        n = next(_seq)
        kw.setdefault("given_name", f"Pat{n}")
        kw.setdefault("family_name", "Example")
        kw.setdefault("mrn", f"MRN{n}")
        kw.setdefault("mobile_phone", f"+1512555{n % 10000:04d}")
        # The MRN in the organization's own namespace unless a feed's is given.
        system = kw.pop("identifier_system", None) or default_identifier_system(organization.slug)
        patient = Patient.objects.create(organization=organization, **kw)
        if patient.mrn:
            PatientIdentifier.objects.create(
                organization=organization,
                patient=patient,
                system=system,
                value=patient.mrn,
                type_code="MR",
            )
        return patient

    def staff(
        self,
        organization: Organization,
        role: str = StaffRole.FRONT_DESK,
        practices=(),
        username: str | None = None,
        password: str = "s3cret-pass!",
    ):
        user = get_user_model().objects.create_user(
            username=username or f"staff{next(_seq)}", password=password, is_staff=True
        )
        membership = StaffMembership.objects.create(user=user, organization=organization, role=role)
        membership.practices.set(practices)
        return user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Real hashing costs ~0.3 s per sign-in attempt; tests check the flow, not the hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def build(db) -> ClinicBuilder:
    return ClinicBuilder()


pytest_plugins = ["tests.browser"]
