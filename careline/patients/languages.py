"""How outside systems name the languages patients get texts in.

One reading for every feed (CSV, HL7 PID-15, FHIR Patient.communication), so a patient's
language does not depend on which door their record came through. Feeds send:

- ISO 639-1/639-2/639-3 codes and BCP 47 tags with a region or script (es-MX, en_US,
  zh-Hant-TW): the language part decides;
- HL7 table 0296 codes, which many EHRs fill with ISO 639-2 (SPA, ENG) or a single
  letter (E, S);
- coded CE/CWE triples (code^text^system): the code is read first, then the text;
- free text (Spanish, ESPANOL, "Spanish; Castilian", "English (US)").

A language Careline does not text in is never read as English: language_code says None,
and the door decides what staff see (see careline.integrations.hl7.receiving).
"""

from __future__ import annotations

import unicodedata

from careline.patients.models import Language

# Codes and the names (English and native) staff and EHRs type, after _fold().
_NAMES = {
    "en": Language.ENGLISH,
    "eng": Language.ENGLISH,
    "english": Language.ENGLISH,
    "es": Language.SPANISH,
    "spa": Language.SPANISH,
    "sp": Language.SPANISH,
    "spanish": Language.SPANISH,
    "espanol": Language.SPANISH,
    "castellano": Language.SPANISH,
    "castilian": Language.SPANISH,
}

# HL7 table 0296 is user-defined; these single letters are what EHRs that do not use
# ISO codes send there. Only read as a code, never inside free text.
_TABLE_0296_LETTERS = {"e": Language.ENGLISH, "s": Language.SPANISH}


def _fold(text: str) -> str:
    """Lower case, accents removed (Español → espanol), spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def language_code(raw: str) -> str | None:
    """Careline's code for `raw` (a code, a BCP 47 tag such as es-MX, or a name), or None
    when it names no language Careline texts in."""
    text = _fold(raw)
    if not text:
        return None
    if text in _NAMES:
        return _NAMES[text]
    if text in _TABLE_0296_LETTERS:
        return _TABLE_0296_LETTERS[text]
    # A regional tag (es-MX, en_US, spa-US) is texted in its language.
    tag = text.replace("_", "-")
    if "-" in tag and " " not in tag:
        found = _NAMES.get(tag.split("-")[0])
        if found:
            return found
    # Free text with a qualifier: "Spanish; Castilian", "English (US)", "Spanish - Mexico".
    for separator in (";", ",", "(", "/", " - "):
        head = text.split(separator)[0].strip()
        if head != text and head in _NAMES:
            return _NAMES[head]
    return None


def coded_language(code: str, text: str = "", system: str = "") -> str | None:
    """Careline's code for a CE/CWE language (PID-15, code^text^system), or None.

    The code is trusted first whatever its coding system claims (feeds label ISO codes
    HL70296 and the other way round); the display text is the fallback.
    """
    return language_code(code) or language_code(text)


def language_as_received(code: str, text: str = "", system: str = "") -> str:
    """How to show staff a language Careline could not read: the sender's own words."""
    parts = [p.strip() for p in (text, code) if p.strip()]
    shown = parts[0] if parts else ""
    if len(parts) == 2 and parts[0] != parts[1]:
        shown = f"{parts[0]} ({parts[1]}{', ' + system.strip() if system.strip() else ''})"
    return shown[:80]
