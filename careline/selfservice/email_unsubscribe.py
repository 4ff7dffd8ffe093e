"""An email's unsubscribe link (List-Unsubscribe, careline.messaging.email): which
address it speaks for, and stopping email to that address in the consent ledger.

The link names no address: it belongs to the email it came in (its outbound message),
and the address is the one that email went to, even if the patient's record has another
one since. Texts to the patient's number are not touched."""

from __future__ import annotations

from dataclasses import dataclass

from careline.clinics.models import Practice
from careline.messaging.models import Channel, OutboundMessage
from careline.patients.consent import emails_opted_out, record_email_consent
from careline.patients.models import ConsentSource, Language
from careline.selfservice.models import PatientLink


@dataclass(frozen=True)
class Recipient:
    organization_id: int
    address: str
    language: str
    practice: Practice | None


def recipient(link: PatientLink) -> Recipient | None:
    """Who the unsubscribe link `link` speaks for; None if its email is not found."""
    message = (
        OutboundMessage.objects.select_related("patient", "practice")
        .filter(pk=link.outbound_message_id, channel=Channel.EMAIL)
        .exclude(to_address="")
        .first()
    )
    if message is None:
        return None
    language = message.patient.preferred_language if message.patient else Language.ENGLISH
    return Recipient(message.organization_id, message.to_address, language, message.practice)


def stop_email(recipient: Recipient, *, one_click: bool = False) -> bool:
    """Opt the address out of email from the organization; False if it already was."""
    if emails_opted_out({recipient.organization_id}, {recipient.address}):
        return False
    record_email_consent(
        organization_id=recipient.organization_id,
        email=recipient.address,
        opted_out=True,
        source=ConsentSource.EMAIL_LINK,
        detail="one-click unsubscribe" if one_click else "unsubscribe page",
    )
    return True
