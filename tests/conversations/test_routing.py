"""Inbox routing: the labeled set, emergencies, and a few rules worth naming."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.reply_accuracy import ROUTING, evaluate_routing, load_messages
from careline.conversations.routing import QUEUES, mentions_emergency, route_message

LABELED = load_messages(ROUTING)


def test_routing_set_is_broad():
    assert len(LABELED) >= 150
    assert {m.queue for m in LABELED} == set(QUEUES)
    assert sum(m.urgent for m in LABELED) >= 15


def test_routing_accuracy_and_every_emergency_flagged():
    report = evaluate_routing(LABELED)
    print(f"\ninbox routing, labeled set: {report.right}/{report.total} = {report.accuracy:.1%}")
    assert report.missed_urgent == [], "an emergency message not flagged urgent"
    assert report.false_urgent == []
    assert report.accuracy >= 0.85


@pytest.mark.parametrize(
    "text",
    ["I have chest pain", "my son can't breathe", "I feel suicidal", "No puedo respirar",
     "tengo dolor en el pecho", "she is having a seizure"],
)  # fmt: skip
def test_emergencies_are_urgent_and_clinical(text):
    routing = route_message(text)
    assert routing.urgent and routing.queue == "clinical"
    assert mentions_emergency(text)


@pytest.mark.parametrize(
    "text,queue",
    [("Can you refill my lisinopril?", "refills"), ("Necesito mi receta", "refills"),
     ("Why was I charged twice?", "billing"), ("¿Aceptan Medicaid?", "billing"),
     ("Please fax my records to my new doctor", "records"),
     ("My daughter has a fever", "clinical"), ("Quiero hacer una cita", "scheduling"),
     ("What are your hours?", "general")],
)  # fmt: skip
def test_queue_in_english_and_spanish(text, queue):
    routing = route_message(text)
    assert routing.queue == queue and not routing.urgent
    assert 0 < routing.confidence <= 1


def test_nothing_recognised_goes_to_general_with_zero_confidence():
    routing = route_message("hmm")
    assert (routing.queue, routing.urgent, routing.confidence) == ("general", False, 0.0)


def test_the_fax_number_is_general_not_records():
    assert route_message("What's your fax number?").queue == "general"


def test_non_text_is_refused_clearly():
    with pytest.raises(TypeError, match="as str"):
        route_message(b"refill")  # type: ignore[arg-type]


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_random_text_always_gets_a_queue(text):
    routing = route_message(text)
    assert routing.queue in QUEUES
    assert 0.0 <= routing.confidence <= 1.0
