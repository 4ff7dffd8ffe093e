"""Self-service's side of the waitlist: offers go out as texts with a link to the offer
page, and answers are worded in the patient's language (careline.waitlist.patient_contact)."""

from __future__ import annotations

from datetime import datetime

from careline.messaging.outbox import withdraw_planned_notice
from careline.scheduling.models import Appointment
from careline.selfservice import links, texts
from careline.waitlist.models import SlotOpening, WaitlistOffer


class TextAndLink:
    def send_offer(self, offer: WaitlistOffer, opening: SlotOpening) -> None:
        token = links.issue_offer_link(offer.pk, offer.expires_at)
        texts.offer(offer, opening, links.url_for(token))

    def answer(
        self, result: str, opening: SlotOpening, language: str, appointment: Appointment | None
    ) -> str:
        return texts.offer_answer(result, opening, language, appointment)

    def offer_answered(self, offer: WaitlistOffer, now: datetime) -> None:
        links.spend_offer_links(offer.pk, now)

    def booked_by_text(self, appointment_id: int) -> None:
        withdraw_planned_notice(appointment_id, "booked", "rescheduled")
