"""How many SMS segments a text costs: GSM-7 (160/153 characters) or UCS-2 (70/67 units).

One character outside the GSM-7 alphabet (an emoji, 'á', a curly quote) switches the whole
message to UCS-2, and characters of the GSM-7 extension table take two septets each.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE_GSM7, MULTI_GSM7 = 160, 153
SINGLE_UCS2, MULTI_UCS2 = 70, 67
# Past this many characters a text is no longer one ordinary SMS; staff get a warning.
WARN_AFTER_CHARACTERS = 160


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # as a person counts them
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    warning: str

    @property
    def per_segment(self) -> int:
        if self.encoding == "GSM-7":
            return SINGLE_GSM7 if self.segments <= 1 else MULTI_GSM7
        return SINGLE_UCS2 if self.segments <= 1 else MULTI_UCS2


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _segments(widths: list[int], single: int, multi: int) -> int:
    """Pack characters into segments; an escape pair or a surrogate pair is never split
    across two segments, so a boundary may leave one unit unused."""
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for width in widths:
        if used + width > multi:
            segments, used = segments + 1, 0
        used += width
    return segments


def count_segments(text: str) -> SegmentCount:
    if is_gsm7(text):
        encoding = "GSM-7"
        widths = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, multi = SINGLE_GSM7, MULTI_GSM7
    else:
        encoding = "UCS-2"
        # Characters beyond the Basic Multilingual Plane (most emoji) are surrogate pairs.
        widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, multi = SINGLE_UCS2, MULTI_UCS2
    units = sum(widths)
    segments = _segments(widths, single, multi)
    warning = ""
    if len(text) > WARN_AFTER_CHARACTERS or segments > 1:
        warning = (
            f"{len(text)} characters in {encoding}: this text is sent as {segments} "
            "segments and billed as that many messages."
        )
    return SegmentCount(encoding, len(text), units, segments, warning)
