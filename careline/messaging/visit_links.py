"""The link to manage a visit that a message may carry ({link}), issued at send time.

The links belong to self-service (careline.selfservice.links; the same table holds
waitlist offer links), a layer above messaging. So messaging only asks for them through
this seam: self-service registers its issuer in its AppConfig.ready(), and the worker
calls it without importing self-service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ManageLinkIssuer:
    # Appointment id → (the URL for the text, the link record, not yet saved).
    new: Callable[[int], tuple[str, object]]
    # Saves the records of a whole batch in one statement, inside the claim's transaction,
    # so a text never carries a link that was rolled back.
    save: Callable[[list], None]


_issuer: ManageLinkIssuer | None = None


def register(issuer: ManageLinkIssuer) -> None:
    global _issuer
    _issuer = issuer


def issuer() -> ManageLinkIssuer:
    if _issuer is None:
        raise RuntimeError(
            "No manage-link issuer registered: a template asks for {link}, and "
            "careline.selfservice (which issues them) is not installed."
        )
    return _issuer
