"""The extra touch for high-risk visits, randomized so its lift is measured.

When the no-show model scores a visit at or after its decision time (`DECISION_LEAD`
before the visit, or at booking if later) and a practice's `RiskTouchPolicy` rates it
high-risk, the visit gets an arm once: *touch* (one more reminder, planned now as a message
about the appointment like any reminder, so the worker sends it and FHIR shows it) or *no
touch*. The arm is a pure function of (policy, visit): the first 8 bytes of a BLAKE2b
digest, uniform over 2⁶⁴, taken modulo 10,000 (a bias below 10⁻¹⁵). Comparing the arms'
no-show rates (careline.analytics.experiments) is then an unbiased estimate of the touch's
effect among high-risk visits; comparing touched visits with all others would not be.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.db import transaction

from careline.messaging import planning
from careline.messaging.models import RiskTouch, RiskTouchPolicy, TouchArm
from careline.scheduling.models import Appointment, AppointmentStatus

# The extra touch is decided this long before the visit: every feature of the no-show
# model must be known by then (careline.analytics.risk).
DECISION_LEAD = timedelta(days=2)


def decision_time(start: datetime, created: datetime) -> datetime:
    """When a visit's extra touch is decided: `DECISION_LEAD` before it, or at booking."""
    return min(start, max(created, start - DECISION_LEAD))


def bucket(policy_id: int, appointment_id: int) -> int:
    digest = hashlib.blake2b(f"{policy_id}:{appointment_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def arm_of(policy: RiskTouchPolicy, appointment_id: int) -> str:
    touched = bucket(policy.id, appointment_id) < policy.touch_basis_points
    return TouchArm.TOUCH if touched else TouchArm.NO_TOUCH


def _policy_for(policies: list[RiskTouchPolicy], practice_id: int) -> RiskTouchPolicy | None:
    """The practice's own running policy, else the organization-wide one."""
    own = [p for p in policies if p.practice_id == practice_id]
    return (own or [p for p in policies if p.practice_id is None] or [None])[0]


def decide(organization_id: int, risks: dict[int, float], now: datetime) -> int:
    """Give each visit in `risks` (id → no-show risk) whose decision time has come, and
    that its practice's policy rates high-risk, its arm; plan the touch for the touch arm.
    A visit is decided once. Returns how many visits were newly decided."""
    policies = list(
        RiskTouchPolicy.objects.filter(organization_id=organization_id, ended_at__isnull=True)
    )
    if not policies or not risks:
        return 0
    decided: list[RiskTouch] = []
    ids = list(risks)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        visits = Appointment.objects.filter(
            id__in=chunk,
            start__gt=now,
            status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED],
        ).values_list("id", "practice_id", "start", "created_at")
        already = set(
            RiskTouch.objects.filter(appointment_id__in=chunk).values_list(
                "appointment_id", flat=True
            )
        )
        for pk, practice_id, visit_start, created in visits:
            policy = _policy_for(policies, practice_id)
            if (
                pk in already
                or policy is None
                or risks[pk] < policy.threshold
                or decision_time(visit_start, created) > now
            ):
                continue
            decided.append(
                RiskTouch(
                    policy=policy,
                    appointment_id=pk,
                    arm=arm_of(policy, pk),
                    risk=risks[pk],
                    decided_at=now,
                )
            )
    with transaction.atomic():
        RiskTouch.objects.bulk_create(decided, batch_size=2000, ignore_conflicts=True)
        touched = [t.appointment_id for t in decided if t.arm == TouchArm.TOUCH]
        planning.plan_extra_touch(touched, now=now)
    return len(decided)


def start_policy(
    *, organization_id: int, practice_id: int | None, threshold: float, touch_basis_points: int,
    now: datetime,
) -> RiskTouchPolicy:  # fmt: skip
    """A practice's new policy replaces its running one (the old one's arms stay)."""
    with transaction.atomic():
        RiskTouchPolicy.objects.filter(
            organization_id=organization_id, practice_id=practice_id, ended_at__isnull=True
        ).update(ended_at=now)
        return RiskTouchPolicy.objects.create(
            organization_id=organization_id,
            practice_id=practice_id,
            threshold=threshold,
            touch_basis_points=touch_basis_points,
            started_at=now,
        )


def stop_policy(policy: RiskTouchPolicy, *, now: datetime) -> None:
    """No new visits are decided; the arms already decided stay, for the results."""
    if policy.ended_at is None:
        policy.ended_at = now
        policy.save(update_fields=["ended_at"])


def not_to_touch(appointment_ids: list[int]) -> set[int]:
    """Which of these visits the extra touch randomized to no touch."""
    return set(
        RiskTouch.objects.filter(
            appointment_id__in=appointment_ids, arm=TouchArm.NO_TOUCH
        ).values_list("appointment_id", flat=True)
    )
