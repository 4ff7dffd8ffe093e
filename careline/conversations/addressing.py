"""Who an inbound text is for: the organization, practice and patients behind the number.

Its own module so that acting on a reply (replies.py) can name a Route without importing
the receiving code (inbound.py), which calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from careline.clinics.models import Organization, Practice
from careline.patients.models import Patient


@dataclass
class Route:
    """Who a text was for, found from the number it was sent to."""

    organization: Organization | None = None
    practice: Practice | None = None
    patients: list[Patient] = field(default_factory=list)
    # Every organization texting from that number: a consent change applies to all.
    organization_ids: list[int] = field(default_factory=list)


def route_inbound(to_phone: str, from_phone: str) -> Route:
    """The organization, practice and patients a text belongs to.

    The number texted decides the organization (a practice's sender number, else an
    organization's default). When several organizations share it, the one that knows the
    sender's number wins; the practice is the one texting from that number, preferring the
    patient's home practice.
    """
    practices = list(Practice.objects.filter(sender_number=to_phone).select_related("organization"))
    org_ids = {p.organization_id for p in practices}
    org_ids.update(
        Organization.objects.filter(default_sender_number=to_phone).values_list("id", flat=True)
    )
    if not org_ids:
        return Route()
    patients = list(
        Patient.objects.filter(organization_id__in=org_ids, mobile_phone=from_phone)
        .select_related("home_practice")
        .order_by("organization_id", "id")
    )
    org_id = patients[0].organization_id if patients else min(org_ids)
    patients = [p for p in patients if p.organization_id == org_id]
    homes = {p.home_practice_id for p in patients if p.home_practice_id}
    texting_practices = [p for p in practices if p.organization_id == org_id]
    practice = next((p for p in texting_practices if p.id in homes), None)
    if practice is None and texting_practices:
        practice = texting_practices[0]
    if practice is None and len(homes) == 1:
        practice = next(p.home_practice for p in patients if p.home_practice_id)
    return Route(
        organization=Organization.objects.get(pk=org_id),
        practice=practice,
        patients=patients,
        organization_ids=sorted(org_ids),
    )
