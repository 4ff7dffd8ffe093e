"""Texts read well with any field missing: an empty variable (a practice without an
address, a patient without a first name) leaves no ", ." or dangling separator."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from careline.messaging.rendering import render_body
from careline.messaging.texts import DEFAULT_BODIES, default_body

FULL = {
    "first_name": "Rosa",
    "practice": "Oak Clinic",
    "date": "Tue, Mar 3",
    "time": "2:40 PM",
    "address": "100 Main St",
    "practice_phone": "(512) 555-0199",
    "link": "https://careline.example/a/Xy7Kp2Qm",
}
BAD = re.compile(r"[,;:]\s*[,.;:]|\s[,.;:!?]|\s{2}|^[\s,.;:]|\s$|\(\s*\)")


def test_a_practice_without_an_address_leaves_no_stray_punctuation():
    text = render_body(default_body("booked", "en"), {**FULL, "address": ""})
    assert ", ." not in text
    assert "2:40 PM. Reply X to cancel" in text


@given(
    kind=st.sampled_from(list(DEFAULT_BODIES)),
    language=st.sampled_from(["en", "es"]),
    empty=st.sets(st.sampled_from(list(FULL))),
)
def test_default_texts_read_well_with_any_fields_empty(kind, language, empty):
    body = default_body(kind, language)
    text = render_body(body, {k: "" if k in empty else v for k, v in FULL.items()})
    assert not BAD.search(text), text
    assert text[:1].isupper() or text[:1].isdigit(), text
    for name, value in FULL.items():
        if name not in empty and "{" + name + "}" in body:
            assert value in text


def test_an_organizations_own_wording_is_tidied_the_same_way():
    body = "Hi {first_name}, see you {date} at {time} at {practice} ({practice_phone})."
    text = render_body(body, {**FULL, "practice": "", "practice_phone": ""})
    assert text == "Hi Rosa, see you Tue, Mar 3 at 2:40 PM."
