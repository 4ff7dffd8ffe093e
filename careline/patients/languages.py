"""How outside systems name the languages patients get texts in.

One reading for every feed (CSV, HL7 PID-15, FHIR Patient.communication), so a patient's
language does not depend on which door their record came through.
"""

from __future__ import annotations

from careline.patients.models import Language

# ISO 639-1 and 639-2 codes, and the names (English and native) staff and EHRs type.
_NAMES = {
    "en": Language.ENGLISH,
    "eng": Language.ENGLISH,
    "english": Language.ENGLISH,
    "es": Language.SPANISH,
    "spa": Language.SPANISH,
    "sp": Language.SPANISH,
    "spanish": Language.SPANISH,
    "espanol": Language.SPANISH,
    "español": Language.SPANISH,
}


def language_code(raw: str) -> str | None:
    """Careline's code for `raw` (a code, a BCP 47 tag such as es-MX, or a name), or None
    when it names no language Careline texts in."""
    text = raw.strip().lower()
    # A regional tag (es-MX, en_US) is texted in its language.
    return _NAMES.get(text) or _NAMES.get(text.replace("_", "-").split("-")[0])
