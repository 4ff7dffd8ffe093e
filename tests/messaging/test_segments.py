from hypothesis import given
from hypothesis import strategies as st

from careline.messaging.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments, is_gsm7

basic = st.text(alphabet=sorted(GSM7_BASIC), max_size=600)
gsm = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=600)


def test_single_segment_limits_and_boundaries():
    assert count_segments("a" * 160).segments == 1
    assert count_segments("a" * 161).segments == 2
    assert count_segments("a" * 306).segments == 2
    assert count_segments("a" * 307).segments == 3
    assert count_segments("é" * 70).encoding == "GSM-7"  # é is in the GSM-7 alphabet
    assert count_segments("á" * 70).segments == 1  # á is not: UCS-2, 70 per segment
    assert count_segments("á" * 71).segments == 2
    assert count_segments("á" * 134).segments == 2
    assert count_segments("á" * 135).segments == 3
    assert count_segments("").segments == 0


def test_one_emoji_switches_the_whole_text_to_ucs2():
    text = "Reply C to confirm " + "x" * 60
    assert count_segments(text).encoding == "GSM-7"
    with_emoji = text + "👍"
    result = count_segments(with_emoji)
    assert result.encoding == "UCS-2"
    assert result.units == len(text) + 2  # the emoji is a surrogate pair
    assert result.segments == 2


def test_extension_characters_count_double():
    assert count_segments("€" * 80).segments == 1
    assert count_segments("€" * 81).segments == 2
    assert count_segments("[" * 80).units == 160


def test_warning_past_160_characters():
    assert count_segments("a" * 160).warning == ""
    assert "2 segments" in count_segments("a" * 161).warning


@given(basic)
def test_basic_gsm7_segments_match_the_formula(text):
    n = len(text)
    expected = 0 if n == 0 else 1 if n <= 160 else -(-n // 153)
    assert count_segments(text).segments == expected


@given(gsm)
def test_gsm7_segments_hold_every_unit_and_never_split_an_escape(text):
    result = count_segments(text)
    assert is_gsm7(text) and result.encoding == "GSM-7"
    assert result.units == len(text) + sum(ch in GSM7_EXTENSION for ch in text)
    if result.units > 160:
        # Enough room for all units, and at most one spare unit lost per boundary.
        assert 153 * result.segments >= result.units
        assert 152 * (result.segments - 1) < result.units


@given(gsm, st.text(min_size=1, max_size=5).filter(lambda s: not is_gsm7(s)))
def test_any_non_gsm_character_means_ucs2_and_never_fewer_segments(text, other):
    mixed = text + other
    result = count_segments(mixed)
    assert result.encoding == "UCS-2"
    assert result.segments >= count_segments(text).segments
    assert result.units == len(mixed.encode("utf-16-le")) // 2
