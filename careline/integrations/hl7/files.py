"""Splitting batch files into messages: MLLP-framed, or plain text (one message per MSH).

A frame may hold an HL7 batch (FHS/BHS … BTS/FTS): its messages are yielded one by one,
as in a plain file, so a file's summary counts messages, not frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from careline.integrations.hl7.mllp import decode
from careline.integrations.hl7.receiving import batch_messages

_CHUNK = 1024 * 1024
_SEGMENT_BREAK = re.compile(rb"\r\n|\r|\n")
# Batch and file envelopes carry no scheduling data.
_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


def iter_messages(stream: BinaryIO) -> Iterator[str]:
    """Messages in a file, read in chunks so a large file is never all in memory.

    A file holding <VT> (0x0b) is read as MLLP frames; otherwise each MSH segment starts
    a new message, and blank lines between messages are ignored.
    """
    first = stream.read(_CHUNK)
    if b"\x0b" in first:
        yield from _frames(first, stream)
    else:
        yield from _plain(first, stream)


def _frames(buffer: bytes, stream: BinaryIO) -> Iterator[str]:
    while True:
        while b"\x1c" not in buffer:
            chunk = stream.read(_CHUNK)
            if not chunk:
                tail = buffer.split(b"\x0b", 1)
                if len(tail) == 2 and tail[1].strip():
                    # A last frame without its end byte is still a message someone sent.
                    yield from batch_messages(decode(tail[1].strip()))
                return
            buffer += chunk
        block, _, buffer = buffer.partition(b"\x1c")
        start = block.rfind(b"\x0b")
        content = (block[start + 1 :] if start != -1 else block).strip(b"\r\n")
        if content.strip():
            yield from batch_messages(decode(content))


def _plain(buffer: bytes, stream: BinaryIO) -> Iterator[str]:
    current: list[bytes] = []
    for line in _lines(buffer, stream):
        line = line.strip()
        if not line or line[:3] in _ENVELOPE:
            continue
        if line.startswith(b"MSH") and current:
            yield decode(b"\r".join(current) + b"\r")
            current = []
        current.append(line)
    if current:
        yield decode(b"\r".join(current) + b"\r")


def _lines(buffer: bytes, stream: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            yield from _SEGMENT_BREAK.split(buffer)
            return
        buffer += chunk
        parts = _SEGMENT_BREAK.split(buffer)
        # The last piece may be a segment cut by the chunk boundary.
        buffer = parts.pop()
        yield from parts
