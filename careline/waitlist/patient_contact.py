"""How the waitlist reaches patients, plugged in by careline.selfservice.

An offer is texted with a link to take it on the self-service pages, and an answer is
worded in the patient's language. The links and the texts belong to self-service, a layer
above the waitlist, so self-service provides them here from its AppConfig.ready() and the
waitlist never imports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from careline.scheduling.models import Appointment
    from careline.waitlist.models import SlotOpening, WaitlistOffer


class PatientContact(Protocol):
    def send_offer(self, offer: WaitlistOffer, opening: SlotOpening) -> None:
        """Text the offer, with a link to take or pass it that ends when the offer does."""

    def answer(
        self, result: str, opening: SlotOpening, language: str, appointment: Appointment | None
    ) -> str:
        """What the patient is told after answering ("won", "gone", "busy", ...)."""

    def offer_answered(self, offer: WaitlistOffer, now: datetime) -> None:
        """The offer is answered: its links must not work any more."""

    def booked_by_text(self, appointment_id: int) -> None:
        """A YES by text booked the visit: the answer says so, so the planned 'booked'
        notice is not sent as well."""


_contact: PatientContact | None = None


def provide(contact: PatientContact) -> None:
    global _contact
    _contact = contact


def contact() -> PatientContact:
    if _contact is None:
        raise RuntimeError("No PatientContact provided: is careline.selfservice installed?")
    return _contact
