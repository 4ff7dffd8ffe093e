from __future__ import annotations

from django.http import HttpRequest

from careline.audit.models import AuditEvent
from careline.clientaddress import client_address


def record_patient_access(
    request: HttpRequest,
    patient_id: int,
    what: str,
    action: str = AuditEvent.Action.VIEW,
    practice_id: int | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        user=request.user if request.user.is_authenticated else None,
        patient_id=patient_id,
        practice_id=practice_id,
        action=action,
        what=what[:120],
        ip_address=client_address(request) or None,
    )
