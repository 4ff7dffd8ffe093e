"""The resource types this server supports, in CapabilityStatement order."""

from __future__ import annotations

from careline.integrations.fhir.resources.appointment import AppointmentHandler
from careline.integrations.fhir.resources.communication import CommunicationHandler
from careline.integrations.fhir.resources.handler import Handler
from careline.integrations.fhir.resources.location import LocationHandler
from careline.integrations.fhir.resources.patient import PatientHandler
from careline.integrations.fhir.resources.practitioner import PractitionerHandler
from careline.integrations.fhir.resources.schedule import ScheduleHandler
from careline.integrations.fhir.resources.slot import SlotHandler

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
