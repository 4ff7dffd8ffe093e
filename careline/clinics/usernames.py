"""One spelling per staff username: NFKC then casefold.

Fullwidth letters (``ｄｅｓｋ``), ligatures and case all fold to the same key, so a
sign-in lockout cannot be dodged by retyping the name in another Unicode form, and
``createstaff`` cannot make two logins that look alike.
"""

from __future__ import annotations

import unicodedata


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).casefold().strip()
