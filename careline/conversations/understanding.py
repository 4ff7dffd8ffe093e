"""What a patient's reply to one of our texts means: confirm, cancel, reschedule, pick a slot...

`interpret_reply` is a pure function of the text and of what our last text asked for
(`expecting`), so it is testable alone and runs inside the caller's transaction. It never
touches the database; acting on the answer is the caller's job.

The one rule that shapes everything here: a false cancellation is the worst possible error,
a false confirmation the second worst. So a reading is only acted on when it is the single
plain meaning of the text; anything mixed, hedged, negated, conditional or phrased as a
question about cancelling comes back `unclear` (or below ACT_THRESHOLD) and goes to a person.
Rescheduling is the exception that may be generous: it only offers slots, the appointment
moves when the patient picks one.

Conventions (what the labeled set in tests/data/replies_labeled.tsv encodes):

- Consent comes first, from `careline.conversations.keywords.consent_keyword` so the inbound
  path and this reader can never disagree; a few more "reasonable means" revocations are
  recognised here ("wrong number", "REMOVE", "STOP STOP", "no más"). A one-word "CANCEL" is an
  opt-out (CTIA/FCC), never a visit cancellation. "cancel please" and "cancle" are neither:
  they might be a revocation or a visit cancel, so they get `cancel` below the threshold and
  a person asks. "cancelar" is not a consent keyword, so it cancels the visit.
- `decline` (not in the first list of intents) is "no" to an offer: a waitlist slot or the
  slots of a reschedule. It changes nothing about existing appointments, which is why it must
  not be spelled `cancel`. After a reminder, a bare "no" is `unclear` instead (no to what?).
- `language` is the language the text is written in; the hint decides texts that have no
  language of their own ("C", "2", "👍").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from careline.conversations.keywords import consent_keyword
from careline.conversations.routing import fold_text, mentions_emergency

CONFIRM = "confirm"
CANCEL = "cancel"
RESCHEDULE = "reschedule"
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
CHOOSE_OPTION = "choose_option"
MORE_OPTIONS = "more_options"
DECLINE = "decline"
UNCLEAR = "unclear"
INTENTS = (
    CONFIRM, CANCEL, RESCHEDULE, OPT_OUT, OPT_IN, HELP, CHOOSE_OPTION, MORE_OPTIONS, DECLINE,
    UNCLEAR,
)  # fmt: skip

# What our last text asked for.
EXPECT_REMINDER = "reminder"  # "Reply C to confirm, X to cancel, R to reschedule"
EXPECT_SLOT_CHOICE = "slot_choice"  # "Reply 1, 2 or 3 ... or MORE for later times"
EXPECT_WAITLIST_OFFER = "waitlist_offer"  # "A slot opened ... Reply YES to take it"
EXPECTING = (EXPECT_REMINDER, EXPECT_SLOT_CHOICE, EXPECT_WAITLIST_OFFER)
LANGUAGES = ("en", "es")

# Below this, callers must not act: the message goes to the staff inbox with the reading
# and its reason shown. Every single-reading reply without a doubt marker scores >= 0.85;
# doubt markers (a question, "but", "late", "maybe"...) bring a reading down to <= 0.6.
ACT_THRESHOLD = 0.8

_SURE = 0.97  # the whole reply is the answer we asked for: "C", "yes", "2", "👍"
_PHRASE = 0.92  # a recognised phrase inside a longer reply
_DOUBTFUL = 0.55  # one reading, but with a doubt marker
_QUESTION = 0.4  # one reading, but asked as a question
_AMBIGUOUS_CANCEL = 0.5  # "cancel please": visit cancel or texting opt-out?


@dataclass(frozen=True)
class Interpretation:
    intent: str
    # How sure we are that acting on `intent` is right; 0.0 for `unclear`.
    confidence: float
    language: str
    # Why this reading, in a few words, for the staff inbox. Never quotes the message.
    reason: str
    # The chosen option (1-based) for `choose_option`, else None.
    option: int | None = None
    # A `cancel` read from "can't make it" alone, without asking to cancel, or an `unclear`
    # question about cancelling ("can I cancel my appointment?"): the patient is offered the
    # choice of another time or cancelling, never cancelled outright.
    tentative: bool = False

    @property
    def should_act(self) -> bool:
        """Whether the caller may act on this without a person looking at it first."""
        return self.intent != UNCLEAR and self.confidence >= ACT_THRESHOLD

    @property
    def action(self) -> str:
        """The intent to act on: `intent` when `should_act`, else `unclear` (to staff)."""
        return self.intent if self.should_act else UNCLEAR


# --- normalising ---------------------------------------------------------------------------

_CONFIRM_EMOJI = ("\U0001f44d", "\u2705", "\U0001f44c", "\u2714", "\u2611", "\U0001f197")
_NEGATIVE_EMOJI = ("\U0001f44e", "\u274c", "\u2716", "\U0001f6ab", "\u274e")
_KEYCAP = re.compile("([0-9])\ufe0f?\u20e3")

# Two-word forms folded into one token so the patterns below see one spelling.
_CONTRACTIONS = [
    (r"\bcan not\b", "cant"),
    (r"\bcannot\b", "cant"),
    (r"\bwill not\b", "wont"),
    (r"\bdo not\b", "dont"),
    (r"\bdoes not\b", "doesnt"),
    (r"\bdid not\b", "didnt"),
    (r"\bis not\b", "isnt"),
    (r"\bare not\b", "arent"),
    (r"\bre schedule\b", "reschedule"),
    (r"\bnever mind\b", "nevermind"),
    (r"\bi m\b", "im"),
]
_CONTRACTIONS_RE = [(re.compile(p), r) for p, r in _CONTRACTIONS]

# Misspellings seen in real replies. Deliberately a list, not edit distance, for cancel:
# "cancer" is one letter from "cancel" and must never cancel a visit.
_TYPOS = {
    "cancel": (
        "cancle", "cancell", "cancl", "cacnel", "canel", "canecl", "cancek", "cansel",
        "cnacel", "cancelr", "cancwl", "cancwel",
    ),
    "confirm": (
        "confrim", "comfirm", "confim", "confirmd", "cnfirm", "cofirm", "confirn", "conferm",
        "comfirmed", "confrimed", "confimed", "confrm", "confirmm", "conirm", "cinfirm",
        "comfrim", "confirme",
    ),
    "reschedule": (
        "reschedual", "reschedul", "reshedule", "rescedule", "reschdule", "rescheule",
        "reschedulle", "rescheduel", "reskedule", "rescheduale", "reschudle", "reschedle",
        "resched",
    ),
    "appointment": ("appoinment", "appointmnet", "apointment", "appt", "apt", "appoitment"),
}  # fmt: skip
_TYPO_OF = {typo: word for word, typos in _TYPOS.items() for typo in typos}


def _squeeze(word: str) -> str:
    """Doubled letters made single ("yesss" -> "yes", "sii" -> "si"), for lexicon lookups."""
    return re.sub(r"(.)\1+", r"\1", word)


@dataclass(frozen=True)
class _Text:
    raw: str
    folded: str  # lower case, no accents, punctuation kept
    words: tuple[str, ...]
    joined: str  # words, contractions folded, typos corrected, one space apart
    question: bool
    has_confirm_emoji: bool
    has_negative_emoji: bool


def _read(text: str) -> _Text:
    raw = _KEYCAP.sub(r"\1", text)
    folded = fold_text(raw)
    collapsed = re.sub(r"([a-z])\1{2,}", r"\1", folded)  # "yesssss" -> "yes"
    joined = " ".join(re.findall(r"[a-z0-9]+", collapsed.replace("'", "")))
    for pattern, replacement in _CONTRACTIONS_RE:
        joined = pattern.sub(replacement, joined)
    words = joined.split()
    fixed = [_TYPO_OF.get(word, word) for word in words]
    return _Text(
        raw=raw,
        folded=folded,
        words=tuple(fixed),
        joined=" ".join(fixed),
        question=_is_question(folded, " ".join(fixed)),
        has_confirm_emoji=any(e in raw for e in _CONFIRM_EMOJI),
        has_negative_emoji=any(e in raw for e in _NEGATIVE_EMOJI),
    )


_QUESTION_START = re.compile(
    r"^(?:(?:hi|hello|hola|ok|so|and|but) )?"
    r"(?:can|could|should|may|do|does|did|is|are|how|what|whats|when|"
    r"where|who|whos|why|which|puedo|podemos|puede|podria|como|que|cuando|donde|quien|"
    r"por que|hay|tienen|es|seria)\b"
)


# "Could you cancel my appointment?" asks us to do it; "can I cancel?" asks whether one may.
# Not "can you confirm my appointment?": that asks us whether it is on.
_POLITE_REQUEST = re.compile(
    r"^(?:(?:hi|hello|hola|ok)\s+)?(?:(?:can|could|would|will) (?:you|u|yall|y all)"
    r"|(?:me )?(?:puede|pueden|podria|podrian)) (?:please |pls |kindly |por favor )?"
    r"(?:cancel|cancelar|reschedule|reprogramar|cambiar)\b"
)


def _is_question(folded: str, joined: str) -> bool:
    if _POLITE_REQUEST.match(joined):
        return False
    return "?" in folded or "\u00bf" in folded or bool(_QUESTION_START.match(joined))


# --- language ------------------------------------------------------------------------------

_SPANISH = frozenset(
    """si gracias cita citas por favor porfa puedo podre podemos podria asistir asistire voy
    vamos cancelar cancela cancelen cancele cancelo cancelenla cancelarla confirmo confirmado
    confirmada confirmar ahi alli estare estaremos nos vemos manana acuerdo claro esta bien
    hola buenos buenas dias tardes quiero necesito la el mi mis para otro otra dia semana
    proxima reprogramar reagendar cambiar cambiarla mover que hora donde quien como tal vez
    llego llegare tarde dejen mensajes manden escriban mas parar alto baja ayuda informacion
    segunda segundo primera primero tercera tercero dos tres uno opcion numero ninguna ninguno
    otras otros horarios opciones fechas senora hijo hija hijos ninos los con sale vale
    perfecto recibir lo siento anular todavia pero llegar muchas tienen hay sea seria posible
    disponible algo funciona esas esos mejor dejo quedo interesa equivocado clinica poder ir
    ya venir estoy hoy ese esa todo todos ahora nada""".split()
)
_ENGLISH = frozenset(
    """yes yeah yep yup the please i you my can will be there appointment thanks thank see
    then cancel confirm confirmed reschedule im ill we it to for and not dont cant wont make
    come sorry one two three first second third more options none stop help what time is of
    have need want sure good great sounds perfect okay late maybe this that with at on
    would like could us our your tomorrow today week next later earlier day another different
    kids both number option take works work thx""".split()
)


def _language(t: _Text, hint: str | None) -> str:
    spanish = sum(w in _SPANISH for w in t.words) + 2 * bool(re.search(r"[\u00bf\u00a1ñ]", t.raw))
    spanish += 2 * bool(re.search(r"[áéíóú]", t.raw.lower()))
    english = sum(w in _ENGLISH for w in t.words)
    if spanish > english:
        return "es"
    if english > spanish:
        return "en"
    return hint or "en"


# --- signals -------------------------------------------------------------------------------

# Words that add politeness but no meaning, around a letter or keyword answer.
_FILLER = frozenset(
    """please pls plz porfa por favor thanks thank you thx ty u gracias muchas so much ok
    okay oh hi hello hola just""".split()
)
_YES_WORDS = frozenset(
    """yes yeah yea yep yup sure absolutely definitely yessir okay ok okie okey si claro
    perfect perfecto great confirm confirmed confirming confirmo confirmado confirmada
    confirmamos confirmar correct correcto vale dale sale affirmative""".split()
)
_YES_SQUEEZED = frozenset(_squeeze(w) for w in _YES_WORDS)
_NO_WORDS = frozenset("no nope nah nop naw".split())
# A "no" anywhere next to a yes ("yes no", "not the second one"), but not "no problem".
_SOME_NO = re.compile(
    r"\b(?:no|nope|nah|not)\b(?! (?:problem|prob|worries|hay problema|an? issue))"
)
_NEGATORS = frozenset(
    """not no never dont didnt cant wont isnt arent wasnt werent shouldnt wouldnt havent hasnt
    nunca tampoco""".split()
)

_CONFIRM_PHRASES = re.compile(
    r"\b(?:i|we|he|she|they|ill|well|hell|shell|theyll|will|shall|gonna|going to)\s+"
    r"(?:both\s+|all\s+)?be\s+there\b"
    r"|(?<!\bi )see (?:you|u|ya)\b|\bsounds (?:good|great|perfect)\b|\bgot it\b|\bof course\b"
    r"|\bwill do\b|\b(?:im|we are|were|i am) coming\b|\blooking forward\b|\bcount (?:me|us) in\b"
    r"|\bi will$|\b(?:ahi|alli|aqui) (?:estare|estaremos|estamos|nos vemos)\b"
    r"|\bcant wait\b|\bnos vemos\b|\bde acuerdo\b|\besta bien\b|\bsi (?:voy|vamos|asistire)\b"
    r"|\b(?:voy|vamos) a (?:ir|asistir|estar ahi)\b|\basistire\b"
)
# "cancel" with an object or an intention: plainly about the visit.
_CANCEL_VERB = (
    r"(?:cancel|cancell?ing|cancelar|cancela|cancelen|cancele|cancelo|cancelenla|cancelarla"
    r"|anular)"
)
_CANCEL_WITH_OBJECT = re.compile(
    r"\bcancel(?:l?ing)? (?:my|the|our|this|that|it|both|all|tomorrow|tomorrows|today|todays"
    r"|for|his|her|their|them|appointment|appointments|visit|la|mi|las|mis|el)\b"
    r"|\b(?:need|have|want|like|wanna|gotta|going|must|got) to cancel\b"
    r"|\b(?:cancelar|cancela|cancelen|cancele|cancelo|cancelenla|cancelarla|anular)\b"
)
_CANCEL_ANY = re.compile(rf"\b{_CANCEL_VERB}\b")
_CANCEL_NEGATED = re.compile(
    r"\b(?:dont|not|never|no|didnt|wont|wasnt|werent|shouldnt|wouldnt|isnt|nunca)\s+"
    r"(?:(?:want|need|have|to|going|gonna|wanna|please|pls|la|lo|mi|me|quiero|necesito|vayan"
    r"|a|it)\s+){0,3}"
    rf"{_CANCEL_VERB}\b"
)
_BARE_CANCEL_CLAUSE = re.compile(
    r"\bcancel(?:l?ing)?\b\s*(?:please|pls|plz|thanks|thank you|thx|por favor)?\s*(?:[.!,;:)]|$)"
)
_CANCELLED = re.compile(r"\b(?:cancelled|canceled|cancellation)\b")
_ABOUT_THE_PAST = re.compile(r"\b(?:already|called|thought)\b")
_UNABLE = re.compile(
    r"\b(?:cant|couldnt|wont|not|unable to|arent)\s+"
    r"(?:(?:be able to|able to|going to|gonna|be)\s+)?"
    r"(?:make it|make the appointment|come|go|attend|be there|get there|show up|coming|going)\b"
    r"|\bno (?:(?:podre|puedo|podemos|podremos|podria|podriamos|voy a poder|vamos a poder"
    r"|va a poder|van a poder)\s+(?:ir|asistir|venir|llegar|acudir)"
    r"|asistire|asistiremos|asistira|voy a ir|vamos a ir|ire|iremos|va a ir)\b"
)
_RESCHEDULE = re.compile(
    r"\breschedul\w*|\breprogram\w*|\breagend\w*|\bpostpone\w*|\bpush (?:it )?(?:back|to)\b"
    r"|\bmove (?:it|my|the|our|this)\b|\bchange (?:the|my|our|this)? ?"
    r"(?:time|date|day|appointment|appointments)\b"
    r"|\b(?:another|different|other|later|earlier) (?:day|time|date|week)\b"
    # not "other/another appointment": "my other appointment" is a different visit
    r"|\b(?:later|earlier|different|new) (?:appointment|slot)\b"
    r"|\binstead\b|\blater in the\b|\bcome (?:in )?(?:earlier|later|another|on|at)\b"
    r"|\b(?:do|does) (?:you|u) have (?:anything|something|any)\b|\bis there (?:anything|an?"
    r" (?:earlier|later|other)|another)\b|\banything (?:on|next|later|earlier|in the)\b"
    r"|\bcan (?:i|we) do (?:a )?(?:later|earlier)\b"
    r"|\b(?:cambiar|cambiarla|cambiarlo|mover|moverla|pasar) (?:la|mi|de|para)?\b"
    r"|\bcambiar\w*|\b(?:otro|otra) (?:dia|fecha|hora|horario|semana)\b|\b(?:tienen|hay) algo\b"
)
_RESCHEDULE_NEGATED = re.compile(
    r"\b(?:dont|not|no|never)\s+(?:(?:want|need|to|quiero)\s+){0,2}(?:reschedul|reprogram|cambiar)"
)
_LATE = re.compile(
    r"\blate\b|\brunning behind\b|\b(?:llego|llegare|llegaremos|llegar|llegamos) (?:\w+ )?"
    r"(?:\w+ )?tarde\b|\bun poco tarde\b"
)
_HEDGE = re.compile(
    r"\b(?:maybe|might|perhaps|probably|possibly|hopefully|unsure|if|unless|depends|try"
    r"|quizas|quiza|depende|todavia)\b|\btal vez\b|\ba lo mejor\b|\bno se\b|\bnot sure\b"
    r"|\bi think\b|\b(?:ill|will|i will) let (?:you|u) know\b|\blet me (?:know|check|see)\b"
    r"|\bnot yet\b|\baun no\b|\bwill see\b"
)
_TIMING = re.compile(
    r"\b(?:until|till|til|before|after|by|hasta|antes|despues)\b|\b(?:on|in) time\b|\ba tiempo\b"
)
_CONTRAST = re.compile(r"\b(?:but|pero|except|however|although|though|aunque)\b")
_OTHER_BUSINESS = re.compile(
    r"\b(?:also|tambien|question|pregunta|refill|prescription|records?|bill|insurance|copay"
    r"|pharmacy|results|medication|receta|factura|seguro|farmacia)\b"
    # a question word anywhere: "yes what's the address"
    r"|\b(?:what|whats|where|wheres|when|how|which|why|who|donde|cuando|cual|quien)\b"
)

# Revocations the consent module does not list, still "reasonable means" under the FCC rule.
_MORE_OPT_OUT = re.compile(
    r"^(?:remove|no mas|basta)$"
    r"|\b(?:quit|cease|end|halt) (?:texting|txting|messaging|sending|contacting)\b"
    r"|\bwrong (?:number|person|phone|#)\b|\bnumero equivocado\b|\bequivocado de numero\b"
    r"|\bno longer (?:want|wish) (?:to )?(?:receive |get )?(?:any |these |your )?"
    r"(?:text|texts|text messages|messages|reminders|sms)\b"
    r"|\bno (?:me )?(?:manden|envien|escriban) mas\b"
    # "cancel the reminder texts" is about the texts, not the visit.
    r"|\b(?:cancel|cancelar|cancelen|cancela) (?:\w+ ){0,3}?(?:texts?|text messages|messages"
    r"|reminders|notifications|alerts|sms|subscription|mensajes|recordatorios|notificaciones)\b"
)
# "cancel everything", "cancel it all", "cancela todo": cancel plus a word for everything and
# no visit named is a revocation (FCC: "any reasonable means"), not a visit cancellation.
_CANCEL_VERB_ANY = re.compile(r"^(?:cancel|cancell?ing|cancelar|cancela|cancelen|cancele|anular)$")
_EVERYTHING = frozenset("all everything todo todos toda todas everythin evrything".split())
_VISIT_WORDS = re.compile(
    r"\b(?:appointments?|visits?|citas?|consultas?|both|ambos|ambas|dos|kids|children|ninos"
    r"|hijos|son|daughter|tomorrow|today|manana|hoy|monday|tuesday|wednesday|thursday|friday"
    r"|saturday|sunday|lunes|martes|miercoles|jueves|viernes|sabado|domingo)\b"
)
_CANCEL_ALL_FILLER = _FILLER | {"it", "of", "this", "that", "me", "now", "just", "the", "lo", "eso"}
_OPT_OUT_WORDS = frozenset("stop stopall unsubscribe quit revoke optout parar alto baja".split())
_OPT_OUT_FILLER = _FILLER | {"it", "me", "now", "all", "already", "ya"}


def _cancels_everything(t: _Text) -> bool:
    if _CANCEL_NEGATED.search(t.joined) or _VISIT_WORDS.search(t.joined):
        return False
    content = [w for w in t.words if w not in _CANCEL_ALL_FILLER]
    verbs = [w for w in content if _CANCEL_VERB_ANY.match(w)]
    rest = [w for w in content if not _CANCEL_VERB_ANY.match(w)]
    return bool(verbs) and bool(rest) and all(w in _EVERYTHING for w in rest)


def _more_opt_out(t: _Text) -> bool:
    if not t.words:
        return False
    if _cancels_everything(t):
        return True
    found = _MORE_OPT_OUT.search(t.joined)
    if (
        found
        and not _CANCEL_NEGATED.search(t.joined)
        and not re.search(r"\b(?:dont|not|no|never)\s*$", t.joined[: found.start()])
    ):
        return True
    # "STOP STOP STOP", "stopp", "stop it": the keyword with nothing but repetition or filler.
    content = {_squeeze(w) for w in t.words if w not in _OPT_OUT_FILLER}
    return len(content) == 1 and content <= {_squeeze(w) for w in _OPT_OUT_WORDS}


def _without_filler(t: _Text) -> list[str]:
    return [w for w in t.words if w not in _FILLER]


# Words that only say whose appointments an answer covers ("C for both kids").
_SCOPE = frozenset(
    """for both all of us them kids children appointments appointment two three the ninos
    hijos los las dos tres para todos ambos""".split()
)


def _only(t: _Text, letter: str) -> bool:
    """The reply is this letter, maybe doubled ("cc"), with politeness or scope around it."""
    content = _without_filler(t)
    if not content or _squeeze(content[0]) != letter:
        return False
    return all(w in _SCOPE for w in content[1:])


def _yes_words(t: _Text) -> list[int]:
    """Positions of un-negated yes words."""
    found = []
    for i, word in enumerate(t.words):
        if _squeeze(word) in _YES_SQUEEZED and not (i and t.words[i - 1] in _NEGATORS):
            found.append(i)
    return found


def _unnegated(pattern: re.Pattern[str], joined: str) -> list[re.Match[str]]:
    matches = []
    for found in pattern.finditer(joined):
        before = joined[: found.start()].split()[-2:]
        if not any(w in _NEGATORS for w in before):
            matches.append(found)
    return matches


@dataclass
class _Signals:
    confirm: bool = False
    confirm_sure: bool = False  # the reply is only a yes ("C", "yes!", "👍")
    confirm_negated: bool = False  # "not confirmed", "no confirmo", "can't confirm"
    cancel: bool = False  # plainly about the visit
    cancel_sure: bool = False  # "X"
    cancel_explicit: bool = False  # says "cancel" (or X), not only "can't make it"
    cancel_bare: bool = False  # "cancel please": visit or texting?
    cancel_negated: bool = False
    cancel_past: bool = False  # "I already cancelled", "why did you cancel"
    reschedule: bool = False
    reschedule_sure: bool = False  # "R", "reschedule"
    reschedule_negated: bool = False
    no: bool = False  # a bare no
    some_no: bool = False  # a "no" anywhere ("yes no"), not "no problem"
    first_at: int = 10**9  # where the first reading starts, to place a "but" after it


def _signals(t: _Text) -> _Signals:
    s = _Signals()
    joined = t.joined
    content = _without_filler(t)

    yes_at = _yes_words(t)
    phrases = _unnegated(_CONFIRM_PHRASES, joined)
    letter = any(_only(t, letter) for letter in ("c", "y", "k"))
    s.confirm = bool(yes_at or phrases or t.has_confirm_emoji or letter)
    s.confirm_sure = letter or (
        s.confirm and all(_squeeze(w) in _YES_SQUEEZED for w in content) and bool(content)
    )
    if t.has_confirm_emoji and not content:
        s.confirm_sure = True
    s.confirm_negated = bool(
        re.search(r"\b(?:not|no|cant|dont|wont|didnt|never) (?:\w+ )?confirm\w*", joined)
    )
    if s.confirm:
        starts = [len(" ".join(t.words[:i])) for i in yes_at] + [m.start() for m in phrases]
        s.first_at = min(starts, default=0)

    s.cancel_negated = bool(_CANCEL_NEGATED.search(joined))
    s.cancel_past = bool(_CANCELLED.search(joined)) or bool(
        _ABOUT_THE_PAST.search(joined) and _CANCEL_ANY.search(joined)
    )
    unable = _UNABLE.search(joined)
    with_object = _CANCEL_WITH_OBJECT.search(joined)
    s.cancel_sure = _only(t, "x")
    bare = bool(_CANCEL_ANY.search(joined)) and not with_object
    only_cancel = [w for w in content if w not in {"it"}] == ["cancel"]
    # A bare "cancel" in a longer text counts only where it ends a clause ("I'm sick, please
    # cancel."), not as any word of a sentence about something else ("cancel culture lol").
    clause_end = bool(_BARE_CANCEL_CLAUSE.search(t.folded))
    s.cancel = bool(
        s.cancel_sure or unable or with_object or (bare and not only_cancel and clause_end)
    )
    s.cancel_bare = bare and only_cancel and not unable
    s.cancel_explicit = bool(s.cancel_sure or with_object or (bare and clause_end))
    for found in (unable, with_object):
        if found:
            s.first_at = min(s.first_at, found.start())

    s.reschedule_sure = _only(t, "r") or (
        bool(content)
        and all(re.fullmatch(r"reschedul\w*|reprogramar|reagendar", w) for w in content)
    )
    s.reschedule = s.reschedule_sure or bool(_RESCHEDULE.search(joined))
    s.reschedule_negated = bool(_RESCHEDULE_NEGATED.search(joined))

    s.no = bool(content) and all(w in _NO_WORDS or w == "n" for w in content)
    s.some_no = bool(_SOME_NO.search(joined))
    return s


# --- the reader ----------------------------------------------------------------------------

# Builds the Interpretation with the detected language; unclear always has confidence 0.
_Result = Callable[..., "Interpretation"]


def interpret_reply(
    text: str,
    *,
    language: str | None = None,
    expecting: str = EXPECT_REMINDER,
    option_count: int = 3,
) -> Interpretation:
    """Read a patient's reply to our last text.

    `expecting` is what that text asked for (see EXPECTING); `option_count` is how many
    numbered slots a `slot_choice` text offered. Act on the result only when
    `result.should_act`; otherwise hand the message to staff with `result.reason`.
    """
    if not isinstance(text, str):
        raise TypeError(f"interpret_reply needs the reply text as str, not {type(text).__name__}")
    if expecting not in EXPECTING:
        raise ValueError(f"expecting must be one of {', '.join(EXPECTING)}; got {expecting!r}")
    if language is not None and language not in LANGUAGES:
        raise ValueError(
            f"language must be one of {', '.join(LANGUAGES)} or None; got {language!r}"
        )
    if option_count < 1:
        raise ValueError(f"option_count must be at least 1; got {option_count}")

    t = _read(text)
    lang = _language(t, language)

    def result(
        intent: str,
        confidence: float,
        reason: str,
        option: int | None = None,
        *,
        tentative: bool = False,
    ) -> Interpretation:
        if intent == UNCLEAR:
            confidence = 0.0
        return Interpretation(intent, round(confidence, 3), lang, reason, option, tentative)

    consent = consent_keyword(text)
    if consent is not None:
        why = "consent keyword" if consent.exact else "asks to stop texts"
        return result(consent.intent, 0.99 if consent.exact else 0.95, why)
    if _more_opt_out(t):
        return result(OPT_OUT, 0.95, "asks to stop texts")
    if re.fullmatch(r"informacion|information", t.joined):
        return result(HELP, 0.97, "asks for help/info")
    if not t.words and not (t.has_confirm_emoji or t.has_negative_emoji):
        return result(UNCLEAR, 0.0, "no words to read")
    if mentions_emergency(text):
        return result(UNCLEAR, 0.0, "possible emergency: tell the patient to call 911")

    s = _signals(t)
    if expecting == EXPECT_SLOT_CHOICE:
        return _slot_choice(t, s, option_count, result)
    if expecting == EXPECT_WAITLIST_OFFER:
        return _waitlist_offer(t, s, result)
    return _reminder(t, s, result)


def _length_penalty(t: _Text) -> float:
    # Long messages carry more we did not read; never enough to sink a clear phrase alone.
    return min(0.07, 0.003 * max(0, len(t.words) - 8))


def _doubt(t: _Text, s: _Signals) -> str | None:
    """Why a single confirm/cancel reading should not be acted on, or None."""
    if _LATE.search(t.joined):
        return "says they will be late"
    if _HEDGE.search(t.joined):
        return "hedged or conditional"
    # Spanish "ya" = already, except "ya no" (no longer) and English "see ya".
    if re.search(r"\balready\b|(?<!see )\bya\b(?! no)", t.joined):
        return "talks about an earlier answer"
    contrast = _CONTRAST.search(t.joined)
    if contrast and contrast.start() > s.first_at:
        return "adds a 'but'"
    if _OTHER_BUSINESS.search(t.joined):
        return "also asks about something else"
    return None


def _explicit_cancel(t: _Text, s: _Signals) -> bool:
    """A plain request to cancel the visit, for contexts that did not offer X."""
    return (
        bool(_CANCEL_WITH_OBJECT.search(t.joined))
        and not s.cancel_negated
        and not s.cancel_past
        and not t.question
    )


def _reminder(t: _Text, s: _Signals, result: _Result) -> Interpretation:
    if s.cancel_negated:
        return result(UNCLEAR, 0.0, "says not to cancel: a person should check")
    if s.confirm and s.cancel:
        return result(UNCLEAR, 0.0, "mixes confirm and cancel")
    if s.confirm and s.reschedule:
        return result(UNCLEAR, 0.0, "mixes confirm and another time")
    if s.cancel_past:
        return result(UNCLEAR, 0.0, "talks about an earlier cancellation")
    if s.reschedule and not s.reschedule_negated:
        # Safe even when phrased as a question or next to "can't make it": rescheduling only
        # offers slots; nothing moves until the patient picks one.
        if s.reschedule_sure:
            return result(RESCHEDULE, _SURE, "asks to reschedule")
        return result(RESCHEDULE, _PHRASE - _length_penalty(t), "asks for another time")
    if s.reschedule_negated:
        return result(UNCLEAR, 0.0, "says not to reschedule")
    if s.confirm_negated:
        return result(UNCLEAR, 0.0, "says it is not confirmed")
    if s.confirm and s.some_no:
        return result(UNCLEAR, 0.0, "both yes and no")
    if s.cancel_bare:
        return result(CANCEL, _AMBIGUOUS_CANCEL, "bare 'cancel': visit cancel or stop texts? ask")
    if s.cancel:
        if t.question:
            # "Could I cancel my appointment?" stays unclear (a person answers), but marked
            # tentative so the patient is offered another time or cancelling meanwhile.
            if s.cancel_explicit and not s.cancel_sure:
                return result(
                    UNCLEAR, 0.0, "asks about cancelling: a person should answer", tentative=True
                )
            return result(UNCLEAR, 0.0, "asks about cancelling: a person should answer")
        # "can't make it on time", "can't come until 3": late, not cancelling.
        timing = _TIMING.search(t.joined) and "ties it to a time ('until', 'on time')"
        keep = re.search(r"\bkeep\b", t.joined) and "also says keep"
        doubt = _doubt(t, s) or timing or keep
        if doubt:
            return result(CANCEL, _DOUBTFUL, f"cancel, but {doubt}")
        if s.cancel_sure:
            return result(CANCEL, _SURE, "X: cancel")
        if not s.cancel_explicit:
            return result(
                CANCEL,
                _PHRASE - _length_penalty(t),
                "says they cannot come",
                tentative=True,
            )
        return result(CANCEL, _PHRASE - _length_penalty(t), "says they cannot come / cancel")
    if s.confirm:
        if t.question:
            return result(CONFIRM, _QUESTION, "yes, but asked as a question")
        doubt = _doubt(t, s)
        if doubt:
            return result(CONFIRM, _DOUBTFUL, f"yes, but {doubt}")
        if s.confirm_sure:
            return result(CONFIRM, _SURE, "plain yes / C")
        return result(CONFIRM, _PHRASE - _length_penalty(t), "says they will come")
    if s.no:
        return result(UNCLEAR, 0.0, "a bare 'no' to a reminder: no to what?")
    if t.has_negative_emoji:
        return result(UNCLEAR, 0.0, "thumbs down / cross alone is not a cancel")
    return result(UNCLEAR, 0.0, "no confirm, cancel or reschedule request found")


# --- slot choice ---------------------------------------------------------------------------

_ORDINALS = {
    "first": 1, "1st": 1, "primera": 1, "primero": 1, "primer": 1,
    "second": 2, "2nd": 2, "segunda": 2, "segundo": 2,
    "third": 3, "3rd": 3, "tercera": 3, "tercero": 3, "tercer": 3,
    "fourth": 4, "4th": 4, "cuarta": 4, "cuarto": 4,
    "fifth": 5, "5th": 5, "quinta": 5, "quinto": 5,
}  # fmt: skip
_NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
}  # fmt: skip
_LAST = frozenset("last ultima ultimo".split())
_OPTION_MARKERS = frozenset("number num no option opt opcion numero la el".split())
_MONTHS = (
    r"jan|january|feb|february|mar|march|apr|april|may|jun|june|jul|july|aug|august|sep|sept"
    r"|september|oct|october|nov|november|dec|december|enero|febrero|marzo|abril|mayo|junio"
    r"|julio|agosto|septiembre|octubre|noviembre|diciembre"
)
_TIME_OR_DATE = re.compile(
    rf"\b\d{{1,2}}\s*(?::\s*\d{{2}}|am\b|pm\b|a\.m|p\.m|o'?clock|hrs\b|h\b)"
    rf"|\b(?:{_MONTHS})\.?\s+\d{{1,2}}\b|\b\d{{1,2}}\s+(?:de\s+)?(?:{_MONTHS})\b"
    rf"|\b\d{{1,2}}/\d{{1,2}}\b|\b(?:at|a las)\s+\d{{1,2}}\b"
)
_MORE = re.compile(
    r"^(?:more|mas)\b|\b(?:more|mas) (?:options|times|dates|days|slots|opciones|horarios"
    r"|fechas|dias|please)\b|\bany ?more\b"
    r"|\b(?:other|otras|otros|different) (?:times|options|dates|days|slots|opciones|horarios"
    r"|fechas|dias|horas)\b"
    r"|\b(?:none|neither|ninguna|ninguno|nada)\b"
    r"|\b(?:anything|something|algo) (?:later|else|earlier|next|in the|on|mas tarde|otro)\b"
    r"|\b(?:dont|doesnt|do not|wont) work\b|\bno (?:me )?(?:funciona|funcionan|sirve|sirven)\b"
    r"|\blater (?:times|dates|options|slots)\b|\b(?:do|does) (?:you|u) have (?:anything|any)\b"
    r"|\bnothing (?:works|else|fits)\b|\bany (?:later|earlier|other|else)\b|\bmore\b"
)
_DECLINE_OFFER = re.compile(
    r"\bnevermind\b|\bno thanks?\b|\bno thank you\b|\bno gracias\b"
    r"|\bkeep (?:my|the|our) (?:original|current|old|appointment|time|slot)\b"
    r"|\b(?:original|current) (?:time|appointment)\b|\bme quedo con mi cita\b"
    r"|\bdejo mi cita\b|\bolvidalo\b|\bnot interested\b|\bno me interesa\b"
)
_PICK_QUESTION = re.compile(r"^(?:can|could|may) (?:i|we) (?:get|have|do|take|book)\b")


def _options_named(t: _Text, option_count: int) -> list[int]:
    """Every option number the reply names, in order ("the second one" -> [2])."""
    words = list(t.words)
    named: list[int] = []
    for i, word in enumerate(words):
        before = words[i - 1] if i else ""
        if word.isdigit():
            named.append(int(word))
        elif word in _ORDINALS:
            named.append(_ORDINALS[word])
        elif word in _NUMBER_WORDS:
            named.append(_NUMBER_WORDS[word])
        elif word in _LAST:
            named.append(option_count)
        elif word in ("one", "uno") and (
            before in _OPTION_MARKERS or [w for w in words if w not in _FILLER] == [word]
        ):
            # "one" is a number only on its own or after "number"/"option": in "the second
            # one" or "the morning one" it stands for a slot already named (or not named).
            named.append(1)
    return named


def _slot_choice(t: _Text, s: _Signals, option_count: int, result: _Result) -> Interpretation:
    if s.cancel_negated:
        return result(UNCLEAR, 0.0, "says not to cancel: a person should check")
    if _explicit_cancel(t, s):
        return result(CANCEL, _PHRASE - _length_penalty(t), "asks to cancel the visit instead")
    if _TIME_OR_DATE.search(t.folded):
        return result(UNCLEAR, 0.0, "gave a time or date, not an option number")
    named = sorted(set(_options_named(t, option_count)))
    wants_more = bool(_MORE.search(t.joined))
    if named and wants_more:
        return result(UNCLEAR, 0.0, "names an option and asks for more")
    if len(named) > 1:
        return result(UNCLEAR, 0.0, "names more than one option")
    if named and (
        re.search(r"\b(?:not|dont|doesnt|isnt|wont|cant|nope)\b", t.joined)
        or re.search(r"\bno\b(?!\.)", t.folded)
    ):
        return result(UNCLEAR, 0.0, "says no next to an option")
    if named:
        option = named[0]
        if not 1 <= option <= option_count:
            return result(UNCLEAR, 0.0, f"no option {option} was offered")
        if t.question and not _PICK_QUESTION.match(t.joined):
            return result(CHOOSE_OPTION, _QUESTION, "asks about an option", option)
        if _HEDGE.search(t.joined) or _CONTRAST.search(t.joined):
            return result(CHOOSE_OPTION, _DOUBTFUL, "picks an option, but hedged", option)
        sure = len(_without_filler(t)) <= 2
        confidence = _SURE if sure else _PHRASE - _length_penalty(t)
        return result(CHOOSE_OPTION, confidence, f"picks option {option}", option)
    if wants_more:
        return result(MORE_OPTIONS, _PHRASE, "asks for other times")
    if s.no or _DECLINE_OFFER.search(t.joined):
        return result(DECLINE, _PHRASE, "declines the offered times")
    return result(UNCLEAR, 0.0, "no option number found")


# --- waitlist offer ------------------------------------------------------------------------

_TAKE_IT = re.compile(
    r"\b(?:ill|i will|we will|well|i|we) take it\b|\bi want it\b|\b(?:la|lo) quiero\b"
    r"|\bme interesa\b|\b(?:i|we) can (?:come|be there|make it|do it|go)\b|\bsign me up\b"
    r"|\bcount me in\b"
)
_REFUSE = re.compile(
    r"^(?:no )?(?:i |we )?cant\b(?! wait)|\bnot (?:today|this time|now)\b"
    r"|\bi(?:ll)? pass\b|^pass$|\bno puedo\b|\bno podemos\b|\bno gracias\b|\bno thanks?\b"
    r"|\bno thank you\b|\bnot interested\b|\bno me interesa\b|\bcant make it\b"
    r"|\b(?:unfortunately|sadly|lamentablemente) not\b"
)


def _waitlist_offer(t: _Text, s: _Signals, result: _Result) -> Interpretation:
    if s.cancel_negated:
        return result(UNCLEAR, 0.0, "says not to cancel: a person should check")
    # English "cancel <something>" only: a bare "cancelar" here more likely turns the offer down.
    if _explicit_cancel(t, s) and "cancel" in t.words:
        return result(CANCEL, _PHRASE - _length_penalty(t), "asks to cancel their visit")
    if "waitlist" in t.words or "wait list" in t.joined:
        return result(UNCLEAR, 0.0, "about the waitlist itself")
    take = s.confirm or bool(_TAKE_IT.search(t.joined))
    refuse = (
        s.some_no
        or bool(_REFUSE.search(t.joined))
        or s.cancel_sure
        or (t.has_negative_emoji and not _without_filler(t))
    )
    if take and refuse:
        return result(UNCLEAR, 0.0, "both yes and no")
    if take:
        if t.question:
            return result(CONFIRM, _QUESTION, "yes, but asked as a question")
        doubt = _doubt(t, s)
        if doubt or s.reschedule:
            return result(CONFIRM, _DOUBTFUL, f"yes, but {doubt or 'asks for another time'}")
        return result(CONFIRM, _SURE if s.confirm_sure else _PHRASE, "takes the offered slot")
    if refuse:
        return result(DECLINE, _PHRASE, "declines the offered slot")
    return result(UNCLEAR, 0.0, "no yes or no found")
