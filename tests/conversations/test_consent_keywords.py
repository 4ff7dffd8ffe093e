"""What in a patient's text counts as opting out, opting back in, or asking for help."""

from __future__ import annotations

import pytest

from careline.conversations.keywords import consent_keyword

OPT_OUT_KEYWORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                    "OPTOUT", "OPT OUT"]  # fmt: skip


@pytest.mark.parametrize("keyword", OPT_OUT_KEYWORDS)
@pytest.mark.parametrize(
    "dress", ["{}", "{}.", "  {}  ", "{}!!", "\n{}\n", "lower", "Title", "{} 🛑"]
)
def test_each_opt_out_keyword_in_any_case_punctuation_or_spacing(keyword, dress):
    text = {"lower": keyword.lower(), "Title": keyword.title()}.get(dress) or dress.format(keyword)
    match = consent_keyword(text)
    assert match is not None and match.intent == "opt_out" and match.exact


@pytest.mark.parametrize("text", ["opt-out", "Opt_Out", "stop all", "S.T.O.P."])
def test_keyword_spelled_with_separators(text):
    assert consent_keyword(text).intent == "opt_out"


@pytest.mark.parametrize(
    "text",
    [
        "stop texting me",
        "Please stop texting me!",
        "STOP SENDING ME MESSAGES",
        "stop the reminders",
        "no more texts",
        "No more text messages please",
        "don't text me",
        "Do not contact me again",
        "I don't want these messages",
        "please unsubscribe me",
        "opt me out",
        "take me off your list",
        "remove my number from your texting list",
        "stop please",
        "Please STOP",
        "stop, thank you",
        "dejen de enviarme mensajes",
        "Dejen de mandarme mensajes por favor",
        "no me manden mensajes",
        "No me envíen más mensajes",
        "no quiero recibir más mensajes",
        "no más mensajes",
        "quiero darme de baja",
        "BAJA",
        "Alto",
        "quit texting me",
        "cease messaging this number",
        "cancel the reminder texts",
        "wrong number",
        "STOP STOP",
        "stopp",
        "stop it",
        "REMOVE",
        "no más",
    ],
)
def test_plain_requests_to_stop_opt_out(text):
    assert consent_keyword(text).intent == "opt_out"


@pytest.mark.parametrize(
    "text",
    [
        "C",
        "X",
        "R",
        "yes",
        "Sí",
        "cancel my appointment",
        "please cancel",
        "Cancelar",
        "I can't make it",
        "no",
        "don't cancel, I'll be late",
        "don't stop texting me",
        "no dejen de enviarme mensajes",
        "I'll stop by tomorrow",
        "remove me from the waitlist",
        "the end of the week works",
        "Thanks!",
        "",
        "👍",
    ],
)
def test_other_texts_have_no_consent_meaning(text):
    assert consent_keyword(text) is None


@pytest.mark.parametrize("text", ["START", "start", "Unstop.", "ALTA", "comenzar"])
def test_only_explicit_commands_opt_back_in(text):
    assert consent_keyword(text).intent == "opt_in"


@pytest.mark.parametrize("text", ["yes", "YES", "subscribe me", "ok", "start again later?"])
def test_yes_and_other_words_do_not_opt_back_in(text):
    match = consent_keyword(text)
    assert match is None or match.intent != "opt_in"


@pytest.mark.parametrize(
    ("text", "language"), [("HELP", "en"), ("help?", "en"), ("Info", "en"), ("AYUDA", "es")]
)
def test_help_keywords(text, language):
    match = consent_keyword(text)
    assert match.intent == "help"
    assert match.language == language


def test_spanish_requests_are_marked_spanish():
    assert consent_keyword("dejen de enviarme mensajes").language == "es"
    assert consent_keyword("stop texting me").language == "en"
