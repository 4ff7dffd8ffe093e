"""Short single-purpose links for patients: /a/<token>.

The token is 16 random URL-safe characters (96 bits); the database stores only its SHA-256,
so a leaked table cannot be turned back into working links. A token carries no patient or
appointment data; everything is looked up from the hash.

Texts are stored in the outbox with the token redacted (careline.messaging.visit_links):
a link in a text remembers the text, and each send of it issues a fresh link like it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from careline.messaging import visit_links
from careline.selfservice.models import VISIT_PURPOSES, LinkPurpose, PatientLink

TOKEN_BYTES = 12
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")
# A link in a text: /a/<token>, the token not run on into more token characters.
LINK_IN_TEXT = re.compile(r"/a/([A-Za-z0-9_-]{16})(?![A-Za-z0-9_-])")
REDACTED_PATH = f"/a/{visit_links.REDACTED_TOKEN}"
# A visit link outlives every reminder cadence; the visit's own start also ends it.
MANAGE_LINK_LIFETIME = timedelta(days=120)
# An unsubscribe link must keep working in an old email (RFC 8058 gives no end); all it
# can do is stop email to one address.
STOP_EMAIL_LINK_LIFETIME = timedelta(days=3650)
# What an email's buttons are called by messaging (careline.messaging.email) → purposes.
EMAIL_ACTIONS = {
    "confirm": LinkPurpose.CONFIRM,
    "cancel": LinkPurpose.CANCEL,
    "move": LinkPurpose.MOVE,
}


class LinkRefused(Exception):
    """Why a link cannot be used: `unknown` (never issued or altered), `expired`, `used`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    @property
    def http_status(self) -> int:
        return 404 if self.reason == "unknown" else 410


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def url_for(token: str) -> str:
    return f"{settings.CARELINE_BASE_URL}/a/{token}"


def _new(*, purpose: str, expires_at: datetime, **target) -> tuple[str, PatientLink]:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = PatientLink(
        token_hash=hash_token(token),
        purpose=purpose,
        created_at=timezone.now(),
        expires_at=expires_at,
        **target,
    )
    return token, link


def new_manage_link(appointment_id: int) -> tuple[str, PatientLink]:
    """A new token to confirm, cancel or move one visit, and its link row, not yet saved:
    the worker saves a whole batch's links in one statement."""
    return _new(
        purpose=LinkPurpose.MANAGE,
        appointment_id=appointment_id,
        expires_at=timezone.now() + MANAGE_LINK_LIFETIME,
    )


def new_manage_link_url(appointment_id: int, message_id: int) -> tuple[str, PatientLink]:
    """The URL of a new manage link for the text `message_id` and its row, not yet saved
    (for messaging's worker, through careline.messaging.visit_links)."""
    token, link = new_manage_link(appointment_id)
    link.outbound_message_id = message_id
    return url_for(token), link


def unsubscribe_url_for(token: str) -> str:
    return f"{url_for(token)}/unsubscribe"


def new_email_links(
    appointment_id: int | None, message_id: int, actions: tuple[str, ...]
) -> tuple[dict[str, str], list[PatientLink]]:
    """The links of one email (through careline.messaging.visit_links): a single-use link
    per button in `actions` ("confirm", "cancel", "move") for the email's visit, and
    always "unsubscribe" for the address the email goes to. Returns ({name: URL}, the
    rows, not yet saved)."""
    urls: dict[str, str] = {}
    rows: list[PatientLink] = []
    now = timezone.now()
    for action in actions if appointment_id else ():
        token, link = _new(
            purpose=EMAIL_ACTIONS[action],
            appointment_id=appointment_id,
            expires_at=now + MANAGE_LINK_LIFETIME,
        )
        urls[action] = url_for(token)
        rows.append(link)
    token, link = _new(purpose=LinkPurpose.STOP_EMAIL, expires_at=now + STOP_EMAIL_LINK_LIFETIME)
    urls["unsubscribe"] = unsubscribe_url_for(token)
    rows.append(link)
    for link in rows:
        link.outbound_message_id = message_id
    return urls, rows


def redact(text: str) -> str:
    """`text` with every link's token replaced: what the outbox stores and staff see."""
    return LINK_IN_TEXT.sub(REDACTED_PATH, text)


def attach_to_message(text: str, message_id: int) -> None:
    """The links `text` carries belong to the outbox row `message_id`, whose stored text
    has them redacted: its sends issue fresh links like them (reissue_for_messages)."""
    hashes = [hash_token(token) for token in LINK_IN_TEXT.findall(text)]
    if hashes:
        PatientLink.objects.filter(token_hash__in=hashes).update(outbound_message_id=message_id)


def reissue_for_messages(texts: dict[int, str]) -> dict[int, tuple[str, PatientLink]]:
    """For each stored text (outbox id → text with the token redacted), the text to send
    now, carrying a fresh link to what its last link opened, and that link's row, not yet
    saved. The token of the earlier link cannot be recovered (only its hash is kept), and
    that link keeps working in case an earlier send did arrive. Texts with no link are left
    out."""
    latest = (
        PatientLink.objects.filter(outbound_message_id__in=list(texts))
        .values("outbound_message_id")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    reissued = {}
    for model in PatientLink.objects.filter(pk__in=list(latest)):
        token, link = _new(
            purpose=model.purpose,
            expires_at=model.expires_at,
            appointment_id=model.appointment_id,
            offer_id=model.offer_id,
        )
        # A spent link stays spent: the visit was moved or the offer answered meanwhile.
        link.used_at = model.used_at
        link.outbound_message_id = model.outbound_message_id
        text = texts[model.outbound_message_id].replace(REDACTED_PATH, f"/a/{token}")
        reissued[model.outbound_message_id] = (text, link)
    return reissued


def save_links(links: list[PatientLink]) -> None:
    PatientLink.objects.bulk_create(links)


def issue_manage_link(appointment_id: int) -> str:
    token, link = new_manage_link(appointment_id)
    link.save(force_insert=True)
    return token


def issue_offer_link(offer_id: int, expires_at: datetime) -> str:
    token, link = _new(purpose=LinkPurpose.OFFER, offer_id=offer_id, expires_at=expires_at)
    link.save(force_insert=True)
    return token


def spend_offer_links(offer_id: int, now: datetime) -> None:
    """An answered offer (by text or on its page) ends every link to it."""
    PatientLink.objects.filter(offer_id=offer_id, used_at__isnull=True).update(used_at=now)


def manage_link_url(appointment_id: int) -> str:
    return url_for(issue_manage_link(appointment_id))


def resolve(token: str, *, now: datetime | None = None) -> PatientLink:
    """The link for `token`, or LinkRefused saying why it cannot be used."""
    now = now or timezone.now()
    if not TOKEN_PATTERN.match(token or ""):
        raise LinkRefused("unknown")
    link = (
        PatientLink.objects.select_related(
            "appointment__practice",
            "appointment__patient",
            "appointment__provider",
            "appointment__appointment_type",
            "offer__opening__practice",
            "offer__opening__provider",
            "offer__patient",
        )
        .filter(token_hash=hash_token(token))
        .first()
    )
    if link is None:
        raise LinkRefused("unknown")
    if link.used_at is not None:
        raise LinkRefused("used")
    if link.expires_at <= now:
        raise LinkRefused("expired")
    if link.purpose in VISIT_PURPOSES and link.appointment.start <= now:
        raise LinkRefused("expired")
    return link


def spend(link: PatientLink, *, now: datetime | None = None) -> None:
    """Mark the link used; LinkRefused("used") if another request spent it first."""
    with transaction.atomic():
        spent = PatientLink.objects.filter(pk=link.pk, used_at__isnull=True).update(
            used_at=now or timezone.now()
        )
    if not spent:
        raise LinkRefused("used")


def count_birth_date_failure(link: PatientLink, *, spend_after: int) -> None:
    """One more wrong birth date on `link`; at `spend_after` the link is spent."""
    with transaction.atomic():
        row = PatientLink.objects.select_for_update().get(pk=link.pk)
        row.birth_date_failures += 1
        if row.birth_date_failures >= spend_after:
            row.used_at = timezone.now()
        row.save(update_fields=["birth_date_failures", "used_at"])
    link.birth_date_failures, link.used_at = row.birth_date_failures, row.used_at
