"""The email channel: a visit's message as an email a patient can act on.

An email cannot be answered like a text (Careline reads no replies to it), so instead of
"Reply C / X / R" it carries a button per answer: confirm, cancel, pick a new time. Each is
a single-use self-service link (issued through careline.messaging.visit_links, like a
text's link; its page asks once more before it changes the visit, as mail scanners open
links on their own). Every email is multipart/alternative (plain text and HTML), carries
the visit as an .ics with the practice's time zone, and a List-Unsubscribe header whose
link (and RFC 8058 one-click POST) stops email to that address in the consent ledger.

The wording is Careline's, in the patient's language (gettext); an organization's own
MessageTemplate rows are texts (they may ask for a reply) and are not used here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop
from icalendar import Calendar, Event

from careline.clinics.validators import display_phone
from careline.messaging.models import MessageKind, OutboundMessage
from careline.messaging.rendering import local_date, local_time
from careline.scheduling.models import Appointment

SUBJECTS = {
    MessageKind.REMINDER: gettext_noop("Appointment reminder: {practice}"),
    MessageKind.BOOKED: gettext_noop("Your appointment is booked: {practice}"),
    MessageKind.RESCHEDULED: gettext_noop("Your appointment has moved: {practice}"),
    MessageKind.CANCELLED: gettext_noop("Your appointment is cancelled: {practice}"),
}
# The first sentence of each kind of email (placeholders filled by format()); the date
# and time follow on their own lines.
OPENINGS = {
    MessageKind.REMINDER: gettext_noop("This is a reminder of your visit at {practice}."),
    MessageKind.BOOKED: gettext_noop("Your visit at {practice} is booked."),
    MessageKind.RESCHEDULED: gettext_noop("Your visit at {practice} has moved to a new time."),
    MessageKind.CANCELLED: gettext_noop("Your visit at {practice} is cancelled."),
}
# The buttons of each kind, in order. A booking notice does not ask to confirm (the
# reminder will), as the text does not; a cancelled visit has nothing left to answer.
BUTTONS = {
    MessageKind.REMINDER: ("confirm", "cancel", "move"),
    MessageKind.BOOKED: ("cancel", "move"),
    MessageKind.RESCHEDULED: ("confirm", "cancel", "move"),
    MessageKind.CANCELLED: (),
}
BUTTON_LABELS = {
    "confirm": gettext_noop("Confirm my visit"),
    "cancel": gettext_noop("Cancel my visit"),
    "move": gettext_noop("Pick a new time"),
}


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str
    ics: bytes
    unsubscribe_url: str


def email_buttons(kind: str) -> tuple[str, ...] | None:
    """The buttons an email of `kind` carries; None when Careline writes no such email."""
    return BUTTONS.get(kind)


def calendar_invite(appointment: Appointment) -> bytes:
    """A PHI-minimal calendar entry: the practice and the time, no visit reason. The time
    is the practice's local time with its zone (VTIMEZONE), as a calendar shows it."""
    practice = appointment.practice
    zone = practice.zone
    calendar = Calendar()
    calendar.add("prodid", "-//Careline//Appointment//EN")
    calendar.add("version", "2.0")
    cancelled = appointment.status == "cancelled"
    calendar.add("method", "CANCEL" if cancelled else "PUBLISH")
    event = Event()
    event.add("uid", f"appointment-{appointment.pk}@careline")
    event.add("dtstamp", timezone.now())
    event.add("dtstart", appointment.start.astimezone(zone))
    event.add("dtend", appointment.end.astimezone(zone))
    # A moved visit's entry replaces the earlier one in the patient's calendar.
    event.add("sequence", appointment.version or 0)
    event.add("summary", gettext("Visit at {practice}").format(practice=practice.name))
    if practice.address:
        event.add("location", practice.address)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    calendar.add_component(event)
    # Only the rules around the visit: the whole zone history would be hundreds of lines.
    calendar.add_missing_timezones(
        first_date=appointment.start.astimezone(zone).date() - timedelta(days=7),
        last_date=appointment.end.astimezone(zone).date() + timedelta(days=7),
    )
    return calendar.to_ical()


def compose(appointment: Appointment, kind: str, urls: dict[str, str]) -> EmailContent:
    """The email of `kind` about `appointment` (practice and patient loaded), in the
    patient's language; `urls` holds a link per button of the kind and "unsubscribe"."""
    practice, patient = appointment.practice, appointment.patient
    language = patient.preferred_language
    zone = practice.zone
    values = {
        "practice": practice.name,
        "date": local_date(appointment.start, zone, language),
        "time": local_time(appointment.start, zone, language),
    }
    with translation.override(language):
        context = {
            "language": language,
            "first_name": patient.given_name,
            "opening": gettext(OPENINGS[kind]).format(**values),
            "date": values["date"],
            "time": values["time"],
            "practice": practice,
            "practice_phone": display_phone(practice.phone),
            "buttons": [
                {"url": urls[name], "label": gettext(BUTTON_LABELS[name]), "name": name}
                for name in BUTTONS[kind]
            ],
            "cancelled": kind == MessageKind.CANCELLED,
            "unsubscribe_url": urls["unsubscribe"],
        }
        return EmailContent(
            subject=gettext(SUBJECTS[kind]).format(**values),
            text=str(render_to_string("messaging/email/visit.txt", context)),
            html=str(render_to_string("messaging/email/visit.html", context)),
            ics=calendar_invite(appointment),
            unsubscribe_url=urls["unsubscribe"],
        )


def send_message_email(message: OutboundMessage, content: EmailContent) -> None:
    """Send `content` to the message's address: plain text and HTML alternatives, the
    .ics, and the one-click unsubscribe headers (RFC 2369, RFC 8058)."""
    email = EmailMultiAlternatives(
        subject=content.subject,
        body=content.text,
        from_email=settings.CARELINE_EMAIL_FROM,
        to=[message.to_address],
        headers={
            "List-Unsubscribe": f"<{content.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    email.attach_alternative(content.html, "text/html")
    email.attach("appointment.ics", content.ics, "text/calendar")
    email.send(fail_silently=False)
