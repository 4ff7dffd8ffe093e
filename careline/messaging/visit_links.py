"""The self-service links a text may carry ({link}, or a link in a queued answer), issued
and kept out of the outbox through this seam.

The links belong to self-service (careline.selfservice.links; the same table holds
waitlist offer links), a layer above messaging. So messaging only asks for them through
this seam: self-service registers its issuer in its AppConfig.ready(), and the worker
and the outbox call it without importing self-service.

A link is a bearer credential, so the outbox never stores one: a text is stored with
REDACTED_TOKEN in place of each link's token (what staff, the API and FHIR see), the
link's record remembers the text it belongs to, and every (re)send issues a fresh link
like it for the copy that goes to the provider. The token is never stored, so it cannot be
sent twice: a retry's text carries a new link, and the earlier one, if it did arrive,
keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# What a stored text shows in place of a link's token: /a/[redacted] is no working link.
REDACTED_TOKEN = "[redacted]"


@dataclass(frozen=True)
class ManageLinkIssuer:
    # (appointment id, id of the text that carries it) → (the URL for the text, the link
    # record, not yet saved).
    new: Callable[[int, int], tuple[str, object]]
    # Saves the records of a whole batch in one statement, inside the claim's transaction,
    # so a text never carries a link that was rolled back.
    save: Callable[[list], None]
    # A text → the same text with every link's token replaced by REDACTED_TOKEN.
    redact: Callable[[str], str]
    # (a text as written, its outbox id): the links it carries now belong to that text.
    attach: Callable[[str, int], None]
    # {text id: stored text} → {text id: (the text to send, with a fresh link in place of
    # the redacted one, and that link's record, not yet saved)}; texts without a link are
    # left out.
    reissue: Callable[[dict[int, str]], dict[int, tuple[str, object]]]
    # An email's links: (appointment id or None, the email's outbox id, the buttons
    # wanted: "confirm", "cancel", "move") → ({button: URL, "unsubscribe": URL},
    # the link records, not yet saved). Each button's link does its one thing once.
    email_links: Callable[[int | None, int, tuple[str, ...]], tuple[dict[str, str], list]]


_issuer: ManageLinkIssuer | None = None


def register(issuer: ManageLinkIssuer) -> None:
    global _issuer
    _issuer = issuer


def registered() -> bool:
    return _issuer is not None


def issuer() -> ManageLinkIssuer:
    if _issuer is None:
        raise RuntimeError(
            "No manage-link issuer registered: a template asks for {link}, and "
            "careline.selfservice (which issues them) is not installed."
        )
    return _issuer
