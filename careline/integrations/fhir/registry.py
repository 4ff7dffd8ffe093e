"""The resource types this server supports, in CapabilityStatement order."""

from __future__ import annotations

from careline.integrations.fhir.communication import CommunicationHandler
from careline.integrations.fhir.resources import (
    AppointmentHandler,
    Handler,
    LocationHandler,
    PatientHandler,
    PractitionerHandler,
    ScheduleHandler,
    SlotHandler,
)

HANDLERS: dict[str, Handler] = {
    handler.resource_type: handler
    for handler in (
        PatientHandler(),
        PractitionerHandler(),
        LocationHandler(),
        ScheduleHandler(),
        SlotHandler(),
        AppointmentHandler(),
        CommunicationHandler(),
    )
}
