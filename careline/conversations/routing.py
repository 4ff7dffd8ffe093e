"""Which staff queue a patient's free-text message belongs in, and whether it is an emergency.

Pure functions over the message text (no database), so the inbox can call them inside any
transaction and the labeled set in tests/data/routing_labeled.tsv can measure them alone.

Keyword and phrase scoring in English and Spanish: each queue has weighted cues, the highest
total wins, and a message with no cue goes to `general`, where a person reads everything
anyway. `urgent` is separate from the queue: emergency words (chest pain, can't breathe,
suicidal...) put the message in `clinical` and tell the caller to answer with "call 911" at
once, whatever the hour.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

SCHEDULING = "scheduling"
BILLING = "billing"
REFILLS = "refills"
CLINICAL = "clinical"
RECORDS = "records"
GENERAL = "general"
QUEUES = (SCHEDULING, BILLING, REFILLS, CLINICAL, RECORDS, GENERAL)

# On a tie the queue whose mistakes cost the patient most wins: a clinical question
# misfiled under billing waits longer than a billing question misfiled under clinical.
_TIE_ORDER = (CLINICAL, REFILLS, RECORDS, BILLING, SCHEDULING, GENERAL)


@dataclass(frozen=True)
class Routing:
    queue: str
    urgent: bool
    # Share of the cue weight that went to the chosen queue: 1.0 when every cue agrees,
    # 0.0 when nothing matched (then the queue is `general`).
    confidence: float
    # The cues that decided, for staff ("refill, pharmacy"); never the message itself.
    reason: str


def fold_text(text: str) -> str:
    """Lower case, accents removed, typographic apostrophes made plain, spaces collapsed.

    Punctuation is kept (a question mark matters to the reply reader); "ñ" becomes "n",
    which costs nothing here because every Spanish cue is written without accents.
    """
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return " ".join(stripped.split())


def words_of(folded: str) -> str:
    """Only the words of folded text, apostrophes dropped ("can't" -> "cant"), one space apart."""
    return " ".join(re.findall(r"[a-z0-9]+", folded.replace("'", "")))


_URGENT = [
    r"\bchest (?:pain|pains|hurts|tightness|pressure)\b",
    r"\bdolor (?:en el |de )?pecho\b",
    r"\b(?:cant|cannot|can not|hard to|trouble|difficulty|struggling to) (?:breathe|breathing)\b",
    r"\bshort(?:ness)? of breath\b",
    r"\bno (?:puedo|puede|podemos) respirar\b",
    r"\bsuicid",
    r"\bkill(?:ing)? (?:myself|himself|herself)\b",
    r"\b(?:hurt|hurting|cut|cutting|harm|harming) (?:myself|himself|herself)\b|\bself harm",
    r"\b(?:end|ending|take|taking) (?:my|his|her) (?:own )?life\b",
    r"\bwant to die\b",
    r"\bquiero (?:morir|matarme)\b",
    r"\bseizure",
    r"\bconvuls",
    r"\bstroke\b",
    r"\bderrame cerebral\b",
    r"\boverdos",
    r"\bsobredosis\b",
    r"\btoo many pills\b",
    r"\bunconscious\b",
    r"\binconsciente\b",
    r"\bunresponsive\b",
    r"\b(?:not|no) (?:responding|responde|reacciona)\b",
    r"\b(?:severe|heavy|a lot of) bleeding\b",
    r"\bbleeding (?:that )?(?:wont|will not|doesnt|does not) stop\b",
    r"\bsangrado (?:fuerte|abundante)\b",
    r"\bface (?:is )?droop",
    r"\bslurred\b",
    r"\bthroat (?:is )?(?:swelling|closing)\b",
    r"\banaphyla",
    r"\bpassed out\b|\bfaint(?:ed|ing)?\b",
    r"\b(?:wont|will not|cant|doesnt|does not|isnt) wak(?:e|ing) up\b|\bnot breathing\b",
    r"\bse desmayo\b",
    # On the way to, or at, emergency care: never a "yes" to a reminder.
    r"\b(?:to|at|in) (?:the )?(?:er|e r)\b(?! (?:bill|billing|statement|records?|paperwork))",
    r"\b(?:going|headed|heading|rushing|driving|on (?:my|our|the) way|taking (?:him|her|me|my \w+)"
    r"|took (?:him|her|me|my \w+)) to (?:the )?(?:hospital|urgent care|emergency)\b",
    r"\bemergency (?:room|rm)\b|\bambulance\b|\b911\b|\bkill(?:ing)? (?:my|him|her) ?self\b",
    r"\bme (?:quiero|voy a) matar\b",
    r"\bheart attack\b|\bataque (?:al corazon|cardiaco)\b|\binfarto\b",
    r"\b(?:cant|cannot|can not|hard to|trouble|difficulty|struggling to) breath\b",
    r"\bcant catch my breath\b|\bno (?:puedo|puede|podemos) (?:respirar|resperar)\b",
    r"\bme (?:falta|cuesta) (?:el aire|respirar)\b",
    r"\bme duele (?:mucho )?el pecho\b|\bpain in (?:my|his|her) chest\b",
    r"\bchest (?:is |feels |keeps )?(?:hurting|tight|heavy|crushing)\b|\bsuisid|\bsucid",
    r"\b(?:sala de )?(?:emergencias?|urgencias)\b",
    r"\b(?:voy|vamos|va|van|estoy|estamos|esta|estan) (?:al|en el) hospital\b",
    r"\b(?:quitarme|quitarse) la vida\b|\bmatarme\b|\bme quiero morir\b",
    r"\bno quiero vivir\b|\bdont want to (?:live|be alive)\b",
    r"\bover ?dos|\bod(?:d|ed)? on\b|\btook (?:too many|a bunch of|all (?:my|the|of my)) pills\b",
    r"\b(?:tome|tomo|se tomo) (?:muchas|demasiadas|todas (?:mis|las)) pastillas\b",
]
_URGENT_RE = re.compile("|".join(f"(?:{p})" for p in _URGENT))

# (pattern, weight) per queue, matched against `words_of(fold_text(text))`.
_CUES: dict[str, list[tuple[str, float]]] = {
    SCHEDULING: [
        (r"\b(?:appointment|appointments|appt|appts)\b", 1.5),
        (r"\b(?:schedule|scheduled|scheduling|reschedule|book|booking)\b", 2.0),
        (r"\b(?:openings?|availability|available|slots?)\b", 1.5),
        (r"\b(?:cancel|cancelar)\b", 1.5),
        (r"\bnew patients?\b", 2.0),
        (r"\b(?:checkup|check up|follow up|followup|physical)\b", 1.0),
        (r"\b(?:see|ver al) (?:the )?(?:doctor|dr|doctora)\b", 1.0),
        (r"\b(?:sooner|earlier|another day|different day|waitlist)\b", 1.0),
        (r"\brunning late\b|\bbe late\b|\bllego tarde\b", 2.0),
        (r"\btelehealth visit\b|\bin person or video\b", 1.5),
        (r"\bcitas?\b", 2.0),
        (r"\b(?:agendar|reprogramar|reagendar)\b", 2.0),
        (r"\bcome (?:in|at)\b", 0.5),
        (r"\bback to back\b", 1.0),
        (r"\b(?:yes|si) but\b|\bdont cancel\b", 1.0),
    ],
    BILLING: [
        (r"\b(?:bill|bills|billing|billed|statement|invoice)\b", 2.0),
        (r"\b(?:charge|charged|charges|charging)\b", 2.0),
        (r"\b(?:pay|paid|payment|payments|owe|balance|refund)\b", 2.0),
        (r"\b(?:copay|co pay|deductible|coinsurance|superbill|eob|hsa|fsa)\b", 2.5),
        (r"\b(?:insurance|insurer|medicaid|medicare|blue cross|aetna|cigna|united ?health)\b", 2.0),
        (r"\b(?:collections|receipt|itemized)\b", 2.0),
        (r"\bhow much\b|\bcost\b|\bprice\b|\bcredit card\b", 1.5),
        (r"\b(?:factura|cobraron|cobro|pagar|pago|debo|deuda|seguro|recibo|cuesta|costo)\b", 2.0),
        (r"\b(?:precio|aceptan)\b", 1.0),
    ],
    REFILLS: [
        (r"\b(?:refill|refills|refilled|refil)\b", 3.0),
        (r"\b(?:prescription|prescriptions|rx|script)\b", 2.5),
        (r"\b(?:pharmacy|cvs|walgreens|rite aid|walmart)\b", 2.0),
        (r"\b(?:ran out|run out|out of my|running out|almost out|nearly out)\b", 2.0),
        (r"\bpills\b", 1.0),
        (r"\b(?:renew|resend|call in)\b", 1.5),
        (r"\bprior auth(?:orization)?\b|\bday supply\b|\bout of stock\b", 2.0),
        (r"\b(?:meds|medication|medicine|inhaler|insulin|metformin|lisinopril)\b", 1.0),
        (r"\bbirth control\b|\bamoxicillin\b|\bthyroid\b", 1.0),
        (r"\b(?:receta|recetas|farmacia|resurtir|renovar)\b", 2.5),
        (r"\bse me (?:acabo|termino|terminaron|acabaron)\b", 2.5),
        (r"\b(?:medicina|medicamento|inhalador)\b", 1.0),
    ],
    CLINICAL: [
        (r"\b(?:fever|rash|dizzy|dizziness|cough|nausea|nauseous|vomit\w*|diarrhea)\b", 2.5),
        (r"\b(?:threw|throwing|throws) up\b|\b(?:headaches|migraines?)\b", 2.5),
        (r"\b(?:pain|hurts|hurt|ache|aches|headache|sore|swollen|swelling|bleeding)\b", 2.0),
        (r"\b(?:infection|uti|covid|flu|symptoms?|side effects?|allergic)\b", 2.0),
        (r"\b(?:blood sugar|blood pressure|pregnant|mole|incision|injection)\b", 2.0),
        (r"\b(?:results?|labs?|lab work|blood test)\b", 1.5),
        (r"\b(?:vaccine|vaccines|shot)\b", 1.0),
        (r"\b(?:nurse|antibiotic|ibuprofen|tylenol|dose|safe)\b", 1.5),
        (r"\bis (?:it|this) normal\b|\bshould i\b|\bwhat should i do\b", 1.0),
        (r"\b(?:fiebre|dolor|garganta|mareos?|sarpullido|tos|vomito|enfermo|enferma)\b", 2.5),
        (r"\b(?:resultados|embarazada|presion)\b", 1.5),
        (r"\bes normal\b", 1.0),
    ],
    RECORDS: [
        (r"\b(?:records?|chart|expedientes?|historial|record)\b", 3.0),
        (r"\b(?:copy|copies|copia|fax|transfer|release|hipaa)\b", 2.0),
        (r"\b(?:forms?|paperwork|formulario|fmla|disability)\b", 2.5),
        (r"\b(?:letter|note) for (?:my )?(?:work|school|employer|job)\b", 3.0),
        (r"\bdoctors note\b|\bwork note\b|\bcarta\b", 3.0),
        (r"\bimmunization|\bvaccination (?:card|record)|\bvacunas\b|\bproof of\b", 2.5),
        (r"\bvisit summary\b|\bimages\b|\bdownload\b|\bsigned\b|\bsignature\b", 1.5),
        (r"\bsaying i was seen\b", 1.0),
    ],
    GENERAL: [
        (r"\b(?:hours|horario|open|located|location|ubicados|address|direccion)\b", 2.0),
        (r"\b(?:parking|estacionamiento|wheelchair)\b", 2.0),
        (r"\b(?:portal|password|log ?in)\b", 2.0),
        (r"\b(?:fax|phone) number\b|\bfront desk\b|\boffice manager\b", 2.5),
        (r"\b(?:complaint|wait time)\b", 2.0),
        (r"\b(?:language|spanish speaking)\b", 2.0),
        (r"\bupdate my (?:phone|address)\b|\bnew address\b|\bi moved\b", 2.5),
        (r"\boffer telehealth\b", 2.0),
    ],
}
_CUES_RE = {
    queue: [(re.compile(pattern), weight) for pattern, weight in cues]
    for queue, cues in _CUES.items()
}


def mentions_emergency(text: str) -> bool:
    """True when the text names a possible emergency (the patient must be told to call 911)."""
    return bool(_URGENT_RE.search(words_of(fold_text(text))))


def route_message(text: str) -> Routing:
    """The staff queue for a free-text message and whether it looks like an emergency."""
    if not isinstance(text, str):
        raise TypeError(f"route_message needs the message text as str, not {type(text).__name__}")
    words = words_of(fold_text(text))
    if _URGENT_RE.search(words):
        return Routing(CLINICAL, urgent=True, confidence=1.0, reason="emergency words")
    scores: dict[str, float] = {}
    hits: dict[str, list[str]] = {}
    for queue, cues in _CUES_RE.items():
        for pattern, weight in cues:
            found = pattern.search(words)
            if found:
                scores[queue] = scores.get(queue, 0.0) + weight
                hits.setdefault(queue, []).append(found.group(0))
    if not scores:
        return Routing(GENERAL, urgent=False, confidence=0.0, reason="no queue cue")
    best = max(scores, key=lambda queue: (scores[queue], -_TIE_ORDER.index(queue)))
    confidence = round(scores[best] / sum(scores.values()), 3)
    return Routing(best, urgent=False, confidence=confidence, reason=", ".join(hits[best]))
