"""Builders for SIU message variants: every event, segment order and version."""

from __future__ import annotations

import itertools

_ids = itertools.count(1)


def control_id() -> str:
    return f"T{next(_ids):06d}"


def siu(
    trigger: str = "S12",
    *,
    appointment_id: str = "A100",
    msg_id: str | None = None,
    sent: str = "20261201080000",
    version: str = "2.5.1",
    start: str = "20261210093000",
    minutes: str = "30",
    status: str = "Booked",
    mrn: str = "M500^^^PMSYS^MR",
    name: str = "Lopez^Ana",
    phones: str = "^PRN^PH^^1^518^5550111~^ORN^CP^^1^518^5550122",
    language: str = "eng^English",
    service: str = "NP30^NEW PATIENT-30",
    provider: str = "LWONG^Wong^Lena^^^Dr.",
    location: str = "TROYMAIN",
    sending_app: str = "PMSYS",
    order: tuple[str, ...] = ("SCH", "TQ1", "PID", "RGS", "AIS", "AIG", "AIL", "AIP"),
    extra: tuple[str, ...] = (),
    separator: str = "\r",
) -> str:
    """A PMSYS-style SIU; fields not wanted are passed as empty strings."""
    segments = {
        "SCH": f"SCH||{appointment_id}|||||||{minutes}|min|^^{minutes}^{start}" + "|" * 14 + status,
        "TQ1": f"TQ1|1||||||{start}",
        "PID": f"PID|1||{mrn}||{name}||19800101|F|||||{phones}||{language}",
        "RGS": "RGS|1|A",
        "AIS": f"AIS|1|A|{service}|{start}|||{minutes}|min",
        "AIG": "",
        "AIL": f"AIL|1|A|{location}" if location else "",
        "AIP": f"AIP|1|A|{provider}|D||{start}|||{minutes}|min" if provider else "",
    }
    msh = (
        f"MSH|^~\\&|{sending_app}|CLINIC|CARELINE|CARELINE|{sent}||SIU^{trigger}|"
        f"{msg_id or control_id()}|P|{version}"
    )
    body = [segments[s] for s in order if segments.get(s)]
    return separator.join([msh, *body, *extra]) + separator
