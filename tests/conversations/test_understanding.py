"""Reply understanding: the labeled sets, the safety rules, and properties of random text."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.reply_accuracy import HOLDOUT, REPLIES, evaluate_replies, load_replies
from careline.conversations.understanding import (
    ACT_THRESHOLD,
    CANCEL,
    CONFIRM,
    EXPECTING,
    INTENTS,
    LANGUAGES,
    UNCLEAR,
    interpret_reply,
)

LABELED = load_replies(REPLIES)


def read(text: str, expecting: str = "reminder", **kwargs):
    return interpret_reply(text, expecting=expecting, **kwargs)


# --- the labeled sets ----------------------------------------------------------------------


def test_labeled_set_is_broad():
    contexts = {reply.expecting for reply in LABELED}
    intents = {reply.intent for reply in LABELED}
    assert len(LABELED) >= 400
    assert contexts == set(EXPECTING)
    assert intents == set(INTENTS)


def test_labeled_set_zero_false_cancellations_all_opt_outs_and_accuracy():
    report = evaluate_replies(LABELED)
    print(f"\nreplies, labeled set: {report.right}/{report.total} = {report.accuracy:.1%}")
    assert report.false_cancellations == [], "read as a cancellation but labeled otherwise"
    assert report.missed_opt_outs == [], "an opt-out that was not honored"
    assert report.accuracy >= 0.95


def test_holdout_set_is_safe_and_accurate():
    # Written before the implementation and not read while tuning it: the honest figure.
    report = evaluate_replies(load_replies(HOLDOUT))
    print(f"\nreplies, held-out set: {report.right}/{report.total} = {report.accuracy:.1%}")
    assert report.false_cancellations == []
    assert report.missed_opt_outs == []
    assert report.accuracy >= 0.95


# --- the rules in the issue, one by one ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["C", "c", "Yes!", "yesss", "Yes I'll be there", "sí", "si", "confirmo", "ahí estaré",
     "👍", "✅", "👌", "confrim", "YES", "yep"],
)  # fmt: skip
def test_confirmations_are_acted_on(text):
    reading = read(text)
    assert (reading.intent, reading.should_act) == (CONFIRM, True)


@pytest.mark.parametrize(
    "text",
    ["X", "x", "I can't make it", "please cancel my appointment", "cancelar", "no podré ir",
     "Cancel my appt"],
)  # fmt: skip
def test_cancellations_are_acted_on(text):
    reading = read(text)
    assert (reading.intent, reading.should_act) == (CANCEL, True)


@pytest.mark.parametrize(
    "text",
    ["R", "r", "can we move it to next week", "reprogramar", "cambiar la cita", "reschedual"],
)
def test_reschedule_requests(text):
    assert read(text).action == "reschedule"


@pytest.mark.parametrize(
    "text",
    ["STOP", "stopall", "UNSUBSCRIBE", "CANCEL", "cancel", "END", "QUIT", "REVOKE", "OPTOUT",
     "OPT OUT", "Cancel.", "PARAR", "ALTO", "stop texting me", "no more texts",
     "dejen de enviarme mensajes", "wrong number", "cancel the reminder texts"],
)  # fmt: skip
@pytest.mark.parametrize("expecting", EXPECTING)
def test_opt_out_in_every_context(text, expecting):
    assert read(text, expecting).action == "opt_out"


def test_one_word_cancel_is_an_opt_out_never_a_visit_cancellation():
    for text in ("CANCEL", "cancel", "Cancel!", "  cancel  "):
        assert read(text).intent == "opt_out"
    # Not the keyword, not clearly the visit either: a person asks.
    assert read("cancel please").action == UNCLEAR
    assert read("cancel please").intent == CANCEL


@pytest.mark.parametrize(
    "text,intent", [("START", "opt_in"), ("unstop", "opt_in"), ("HELP", "help"),
                    ("info", "help"), ("AYUDA", "help")],
)  # fmt: skip
def test_opt_in_and_help_keywords(text, intent):
    assert read(text).action == intent


@pytest.mark.parametrize(
    "text",
    ["yes but can I come at 3?", "no", "don't cancel, I'll be late", "I might be late",
     "can I cancel?", "¿puedo cancelar?", "not cancel", "no cancelar", "👎", "❌",
     "Yes for Emma, but cancel Liam's", "yes no", "Yes?", "I already cancelled",
     "Can't make it on time", "I have chest pain, can I still come?", "Start texting me again"],
)  # fmt: skip
def test_ambiguous_replies_go_to_staff(text):
    reading = read(text)
    assert not reading.should_act
    assert reading.action == UNCLEAR
    assert reading.reason


def test_questions_about_cancelling_are_unclear_not_low_confidence_cancels():
    reading = read("can I cancel my appointment?")
    assert reading.intent == UNCLEAR and reading.confidence == 0.0


def test_a_polite_request_to_cancel_is_not_a_question():
    assert read("Could you please cancel my appointment?").action == CANCEL


def test_emergency_words_are_never_acted_on():
    reading = read("I can't make it, I have chest pain")
    assert reading.action == UNCLEAR and "911" in reading.reason


@pytest.mark.parametrize(
    "text,option",
    [("2", 2), ("#2", 2), ("the second one", 2), ("option 2", 2), ("2 please", 2), ("la 2", 2),
     ("segunda", 2), ("1️⃣", 1), ("the last one", 3), ("Three", 3), ("no. 1", 1)],
)  # fmt: skip
def test_slot_choice(text, option):
    reading = read(text, "slot_choice")
    assert (reading.action, reading.option) == ("choose_option", option)


@pytest.mark.parametrize("text", ["2pm", "1 or 2", "4", "0", "not 2", "May 3", "the 10:30 one"])
def test_slot_choice_that_is_not_one_offered_option(text):
    reading = read(text, "slot_choice")
    assert reading.action == UNCLEAR and reading.option is None


def test_slot_choice_respects_the_number_of_options_offered():
    assert read("4", "slot_choice", option_count=5).option == 4
    assert read("the last one", "slot_choice", option_count=5).option == 5
    assert read("4", "slot_choice", option_count=3).action == UNCLEAR


def test_more_options_and_declining_an_offer():
    assert read("more", "slot_choice").action == "more_options"
    assert read("none of these work", "slot_choice").action == "more_options"
    assert read("no thanks", "slot_choice").action == "decline"
    assert read("No", "waitlist_offer").action == "decline"
    assert read("YES", "waitlist_offer").action == CONFIRM
    # "no" after a reminder says nothing about which appointment or what to do.
    assert read("No", "reminder").action == UNCLEAR


def test_x_declines_a_waitlist_offer_but_cancels_after_a_reminder():
    assert read("X", "waitlist_offer").action == "decline"
    assert read("X", "reminder").action == CANCEL


@pytest.mark.parametrize(
    "text,hint,language",
    [("Sí, ahí estaré", None, "es"), ("Yes I'll be there", None, "en"), ("no podré ir", "en", "es"),
     ("C", "es", "es"), ("C", None, "en"), ("👍", "es", "es"), ("2", "en", "en")],
)  # fmt: skip
def test_language_detected_or_taken_from_the_hint(text, hint, language):
    assert read(text, language=hint).language == language


def test_reading_is_frozen_and_reason_never_quotes_the_message():
    reading = read("Please cancel my appointment with Dr Zyxwv")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.intent = CONFIRM  # type: ignore[misc]
    assert "Zyxwv".lower() not in reading.reason.lower()


@pytest.mark.parametrize(
    "kwargs,message",
    [({"expecting": "poll"}, "expecting must be one of"),
     ({"language": "fr"}, "language must be one of"),
     ({"expecting": "slot_choice", "option_count": 0}, "option_count")],
)  # fmt: skip
def test_bad_arguments_get_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        interpret_reply("yes", **kwargs)


def test_non_text_is_refused_clearly():
    with pytest.raises(TypeError, match="as str"):
        interpret_reply(None)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------

_CONFIRM_OR_CANCEL = [r.text for r in LABELED if r.intent in (CONFIRM, CANCEL)]
_words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_phrase_words = st.lists(
    st.sampled_from(
        "yes no I can't make it please thanks the appointment tomorrow late but C X R 2 👍 "
        "si cita gracias ok will be there sorry maybe".split()
    ),
    max_size=6,
).map(" ".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=_words, expecting=st.sampled_from(EXPECTING), hint=st.sampled_from([None, *LANGUAGES]))
def test_random_text_never_raises_and_stays_in_range(text, expecting, hint):
    reading = interpret_reply(text, language=hint, expecting=expecting)
    assert reading.intent in INTENTS
    assert 0.0 <= reading.confidence <= 1.0
    assert reading.language in LANGUAGES
    assert reading.reason
    assert (reading.option is not None) == (reading.intent == "choose_option")


@settings(max_examples=300)
@given(
    text=st.one_of(st.sampled_from(_CONFIRM_OR_CANCEL), _phrase_words, _words),
    expecting=st.sampled_from(["reminder", "waitlist_offer"]),
)
@example(text="yes", expecting="reminder")
@example(text="X", expecting="reminder")
@example(text="please cancel my appointment", expecting="reminder")
def test_a_question_mark_never_makes_confirm_or_cancel_more_confident(text, expecting):
    plain = interpret_reply(text, expecting=expecting)
    if plain.intent not in (CONFIRM, CANCEL):
        return
    asked = interpret_reply(text + "?", expecting=expecting)
    asked_confidence = asked.confidence if asked.intent == plain.intent else 0.0
    assert asked_confidence <= plain.confidence


_NEGATED_CANCEL = st.sampled_from(
    ["don't cancel", "do not cancel", "not cancel", "no cancelar", "don't want to cancel",
     "please don't cancel my appointment", "no cancelen", "DONT CANCLE", "never cancel",
     "no la cancelen", "I wasn't going to cancel"]
)  # fmt: skip


@settings(max_examples=300)
@given(
    before=st.one_of(_phrase_words, _words),
    negation=_NEGATED_CANCEL,
    after=st.one_of(_phrase_words, st.just("please cancel my appointment"), _words),
    expecting=st.sampled_from(EXPECTING),
)
def test_a_negated_cancel_is_never_read_as_cancel(before, negation, after, expecting):
    reading = interpret_reply(f"{before} {negation} {after}", expecting=expecting)
    assert reading.intent != CANCEL


def test_threshold_separates_doubtful_from_sure_readings():
    assert read("yes").confidence >= ACT_THRESHOLD
    assert read("yes but I'll be late").confidence < ACT_THRESHOLD
    assert read("yes but I'll be late").intent == CONFIRM
