"""The email channel: the same message through Django's email backend, with the visit
as an .ics attachment so it lands in the patient's calendar."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone
from icalendar import Calendar, Event

from careline.messaging.models import MessageKind, OutboundMessage
from careline.scheduling.models import Appointment

SUBJECTS = {
    "en": {
        MessageKind.REMINDER: "Appointment reminder",
        MessageKind.BOOKED: "Your appointment is booked",
        MessageKind.RESCHEDULED: "Your appointment has moved",
        MessageKind.CANCELLED: "Your appointment is cancelled",
    },
    "es": {
        MessageKind.REMINDER: "Recordatorio de cita",
        MessageKind.BOOKED: "Su cita está reservada",
        MessageKind.RESCHEDULED: "Su cita cambió de fecha",
        MessageKind.CANCELLED: "Su cita fue cancelada",
    },
}


def calendar_invite(appointment: Appointment) -> bytes:
    """A PHI-minimal calendar entry: the practice and the time, no visit reason."""
    practice = appointment.practice
    calendar = Calendar()
    calendar.add("prodid", "-//Careline//Appointment//EN")
    calendar.add("version", "2.0")
    cancelled = appointment.status == "cancelled"
    calendar.add("method", "CANCEL" if cancelled else "PUBLISH")
    event = Event()
    event.add("uid", f"appointment-{appointment.pk}@careline")
    event.add("dtstamp", timezone.now())
    event.add("dtstart", appointment.start)
    event.add("dtend", appointment.end)
    event.add("summary", f"Visit at {practice.name}")
    if practice.address:
        event.add("location", practice.address)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    calendar.add_component(event)
    return calendar.to_ical()


def send_message_email(message: OutboundMessage, body: str | None = None) -> None:
    """Email `message`: `body` is its text as it goes out (with a live link), else the
    stored one."""
    appointment = (
        Appointment.objects.select_related("practice", "patient").get(pk=message.appointment_id)
        if message.appointment_id
        else None
    )
    language = appointment.patient.preferred_language if appointment else "en"
    subjects = SUBJECTS.get(language, SUBJECTS["en"])
    subject = subjects.get(message.kind, "Message from your care team")
    if appointment is not None:
        subject = f"{subject} — {appointment.practice.name}"
    email = EmailMessage(
        subject=subject,
        body=message.body if body is None else body,
        from_email=settings.CARELINE_EMAIL_FROM,
        to=[message.to_address],
    )
    if appointment is not None:
        email.attach("appointment.ics", calendar_invite(appointment), "text/calendar")
    email.send(fail_silently=False)
