"""HL7 v2 original-mode acknowledgements (ACK) with MSA and, for errors, ERR."""

from __future__ import annotations

from datetime import UTC, datetime

from careline.integrations.hl7.parsing import Header

ACCEPT, ERROR, REJECT = "AA", "AE", "AR"

# HL7 table 0357 (message error condition codes) used in ERR.
ERROR_CODE_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "207": "Application internal error",
}

_UNKNOWN_HEADER = Header(
    control_id="",
    message_type="",
    trigger="",
    version="2.5.1",
    sending_application="",
    sending_facility="",
    sent_at="",
)


def escape(text: str) -> str:
    """Escape HL7 delimiters (standard encoding characters) in free text."""
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("~", "R"), ("&", "T")):
        out = out.replace(char, f"\\{code}\\")
    return " ".join(out.split())


def _hd(components: tuple[str, ...]) -> str:
    return "^".join(escape(c) for c in components).rstrip("^")


def _location(location: str) -> str:
    return "^".join(escape(part) for part in location.split("^"))


def _version_at_least_25(version: str) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts + [0, 0])[:2] >= (2, 5)


def build_ack(
    code: str,
    header: Header | None,
    *,
    reason: str = "",
    error_code: str = "207",
    error_location: str = "",
    ack_control_id: str,
    at: datetime | None = None,
    warning: str = "",
) -> str:
    """The ACK for a message: MSH, MSA (MSA-3 text), and ERR when it is not AA.

    ERR follows the message's version: ERR-1 (segment^seq^field^code) up to 2.4,
    ERR-2 location / ERR-3 code / ERR-4 severity / ERR-8 user message from 2.5 on.
    `error_location` is an ERL (segment^sequence^field[^repetition^component]), e.g.
    SCH^1^11^1^4, naming the field at fault. An AA with a `warning` (applied, but
    something optional was missing) carries it in an ERR of severity W, so the sender
    sees it and does not resend.
    """
    header = header or _UNKNOWN_HEADER
    at = (at or datetime.now(UTC)).astimezone(UTC)
    version = header.version or "2.5.1"
    trigger = escape(header.trigger)
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            "CARELINE",
            "CARELINE",
            _hd(header.sender[0]) or escape(header.sending_application),
            _hd(header.sender[1]) or escape(header.sending_facility),
            at.strftime("%Y%m%d%H%M%S+0000"),
            "",
            f"ACK^{trigger}^ACK" if trigger else "ACK",
            escape(ack_control_id),
            # The ACK belongs to the same exchange: a test message gets a test ACK.
            escape(header.processing_id) or "P",
            escape(version),
        ]
    )
    if code == ACCEPT and warning:
        reason, severity = warning, "W"
    else:
        severity = "E"
    segments = [msh, "|".join(["MSA", code, escape(header.control_id), escape(reason[:80])])]
    if code != ACCEPT or severity == "W":
        label = ERROR_CODE_TEXT.get(error_code, ERROR_CODE_TEXT["207"])
        if _version_at_least_25(version):
            segments.append(
                "|".join(
                    [
                        "ERR",
                        "",
                        _location(error_location),
                        f"{error_code}^{label}^HL70357",
                        severity,
                        "",
                        "",
                        "",
                        escape(reason),
                    ]
                )
            )
        else:
            # ELD has room for segment^sequence^field only.
            where = "^".join((error_location.split("^") + ["", "", ""])[:3])
            segments.append(f"ERR|{_location(where)}^{error_code}&{label}&HL70357")
    return "\r".join(segments) + "\r"
