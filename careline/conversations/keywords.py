"""Consent keywords: what in a patient's text opts the number out, back in, or asks for help.

Checked before anything else is read into a message. A text that is exactly one CTIA /
FCC (2024 revocation rule) opt-out keyword opts out; so does a plain request in other
words, in English or Spanish ("stop texting me", "dejen de enviarme mensajes"), because
the FCC rule accepts revocation "by any reasonable means". Re-subscribing is the reverse:
only an explicit command does it, so no ordinary later message can undo an opt-out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from careline.patients.models import Language

# Exactly one of these, whatever the case, spacing or punctuation ("Stop.", "opt-out").
OPT_OUT_KEYWORDS = {
    "stop": Language.ENGLISH,
    "stopall": Language.ENGLISH,
    "unsubscribe": Language.ENGLISH,
    "cancel": Language.ENGLISH,
    "end": Language.ENGLISH,
    "quit": Language.ENGLISH,
    "revoke": Language.ENGLISH,
    "optout": Language.ENGLISH,
    # What Spanish-language US programs list beside STOP. Not CANCELAR: patients use it to
    # cancel a visit, and the reminders never ask for it.
    "alto": Language.SPANISH,
    "parar": Language.SPANISH,
    "baja": Language.SPANISH,
}
# These may come with politeness around them ("stop please", "por favor STOP"). Not
# CANCEL or END: "cancel please" is far more often about the visit than about texts.
POLITE_OPT_OUT_KEYWORDS = {"stop", "stopall", "unsubscribe", "optout", "revoke", "alto", "baja"}
POLITENESS = {
    "please", "pls", "plz", "thanks", "thank", "you", "thx", "ty", "now",
    "por", "favor", "porfavor", "gracias", "ya",
}  # fmt: skip

# START and UNSTOP are CTIA's opt-in keywords. Not YES (CTIA lists it too) because "yes"
# confirms a visit here. Spanish: ALTA is the standard counterpart of BAJA ("darse de
# alta"), COMENZAR is START translated; both are commands nobody types by accident.
OPT_IN_KEYWORDS = {
    "start": Language.ENGLISH,
    "unstop": Language.ENGLISH,
    "alta": Language.SPANISH,
    "comenzar": Language.SPANISH,
}
HELP_KEYWORDS = {"help": Language.ENGLISH, "info": Language.ENGLISH, "ayuda": Language.SPANISH}

_TEXTS_EN = r"(?:texts?|text messages?|txts?|messages?|msgs?|sms|reminders?)"
_TEXTS_ES = r"(?:mensajes?|textos?|sms|recordatorios?|mensajitos?)"
# Phrases are searched anywhere in the normalized text (lower case, no accents, no
# apostrophes, punctuation turned into spaces).
OPT_OUT_PHRASES_EN = [
    r"\bstop (?:texting|txting|messaging|sending|contacting|sms ?ing)\b",
    rf"\bstop (?:all |the |these |those |your |ur )?{_TEXTS_EN}\b",
    rf"\bstop (?:getting|receiving) (?:\w+ )?{_TEXTS_EN}\b",
    rf"\bno more {_TEXTS_EN}\b",
    r"\b(?:dont|do not|never) (?:text|txt|message|msg|sms|contact) (?:me|us|this number)\b",
    rf"\b(?:dont|do not) send (?:me |us )?(?:any )?(?:more )?{_TEXTS_EN}\b",
    rf"\b(?:dont|do not) want (?:any |to get |to receive )?(?:more |these |your )?{_TEXTS_EN}\b",
    r"\bunsubscribe\b",
    r"\bopt (?:me )?out\b",
    r"\b(?:remove|take) (?:me|my number|this number) (?:off|from) (?:of )?"
    r"(?:your |the |this |ur )?(?:text |texting |sms |message |messaging |mailing )?"
    r"(?:list|texts|messages)\b",
    r"\bleave me alone\b",
    r"\b(?:quit|cease|end) (?:texting|txting|messaging|sending|contacting)\b",
    rf"\bcancel (?:all |the |these |your |ur )?(?:reminder |text )?{_TEXTS_EN}\b",
    r"\bwrong (?:number|person)\b",
    r"^stop(?: stop)+$",
    r"^stop+ ?(?:it)?$",
    r"^remove(?: me)?$",
]
OPT_OUT_PHRASES_ES = [
    r"\b(?:dejen|deje|deja|dejar|dejes) de (?:enviar|mandar|escribir|textear|mensajear)",
    rf"\bno (?:me |nos )(?:manden|mande|mandes|envien|envie|envies|escriban|escriba|textee"
    rf"|texteen) (?:mas )?{_TEXTS_ES}",
    r"\bno (?:me |nos )(?:manden|mande|envien|envie|escriban|escriba) mas\b",
    rf"\bno (?:quiero|deseo) (?:recibir |seguir recibiendo )?(?:mas )?{_TEXTS_ES}\b",
    rf"\bno mas {_TEXTS_ES}\b",
    rf"\bbasta de {_TEXTS_ES}\b",
    r"\bde baja\b",
    r"^no mas$",
]
_NEGATION_BEFORE = re.compile(r"(?:\bdont|\bdo not|\bno|\bnunca)\s*$")


@dataclass(frozen=True)
class ConsentMatch:
    intent: str  # "opt_out" | "opt_in" | "help"
    language: str
    # What matched, for the consent ledger: the keyword, or "phrase" for other words
    # (never the message text itself).
    matched: str
    exact: bool


def normalize(text: str) -> str:
    """Lower case, accents and apostrophes removed, punctuation and emoji as spaces."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    kept = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category == "Mn" or char in "'’`´":
            continue
        kept.append(char if category[0] in "LN" or char.isspace() else " ")
    return " ".join("".join(kept).casefold().split())


def consent_keyword(text: str) -> ConsentMatch | None:
    """The consent meaning of a patient's text, or None when it has none."""
    words = normalize(text).split()
    compact = "".join(words)
    for table, intent in (
        (OPT_OUT_KEYWORDS, "opt_out"),
        (OPT_IN_KEYWORDS, "opt_in"),
        (HELP_KEYWORDS, "help"),
    ):
        if compact in table:
            return ConsentMatch(intent, table[compact], compact.upper(), exact=True)
    polite = "".join(w for w in words if w not in POLITENESS)
    if polite in POLITE_OPT_OUT_KEYWORDS:
        return ConsentMatch("opt_out", OPT_OUT_KEYWORDS[polite], polite.upper(), exact=False)
    return _opt_out_phrase(" ".join(words))


def _opt_out_phrase(normalized: str) -> ConsentMatch | None:
    for patterns, language in (
        (OPT_OUT_PHRASES_EN, Language.ENGLISH),
        (OPT_OUT_PHRASES_ES, Language.SPANISH),
    ):
        for pattern in patterns:
            for found in re.finditer(pattern, normalized):
                # "don't stop texting me" / "no dejen de enviarme mensajes" ask the opposite.
                if not _NEGATION_BEFORE.search(normalized[: found.start()]):
                    return ConsentMatch("opt_out", language, "phrase", exact=False)
    return None
