"""The CapabilityStatement: what this server really supports, generated from the handlers."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from careline.integrations.fhir.registry import HANDLERS


def capability_statement(base_url: str) -> dict[str, Any]:
    resources = []
    for handler in HANDLERS.values():
        interactions = ["read", "search-type"]
        if handler.keeps_history:
            interactions += ["vread", "history-instance"]
        if handler.writable:
            interactions += ["create", "update"]
        entry: dict[str, Any] = {
            "type": handler.resource_type,
            "interaction": [{"code": code} for code in interactions],
            "versioning": "versioned-update" if handler.versioned else "no-version",
            "readHistory": handler.keeps_history,
            "updateCreate": False,
            "conditionalCreate": handler.writable,
            "conditionalUpdate": handler.writable,
            "conditionalRead": "not-match" if handler.versioned else "not-supported",
            "conditionalDelete": "not-supported",
            "searchParam": [
                {"name": name, "type": param.type, "documentation": param.documentation}
                for name, param in handler.search_parameters.items()
            ],
        }
        if handler.documentation:
            entry["documentation"] = handler.documentation
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.now().date().isoformat(),
        "publisher": "Careline",
        "kind": "instance",
        "software": {"name": "Careline"},
        "implementation": {"description": "Careline FHIR R4 API", "url": base_url.rstrip("/")},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Results page with _count (default 50, at most 500) and the Bundle's next "
                    "link. Unknown search parameters are rejected. No delete, type or system "
                    "history, batch or transaction. Conditional create takes If-None-Exist (or "
                    "the criteria as query parameters); conditional update is PUT "
                    "[type]?criteria. Patient, Practitioner, Location, Schedule, Appointment "
                    "and Communication are versioned: meta.versionId and meta.lastUpdated, "
                    "ETag and Last-Modified on reads, If-Match on update (412 when stale); "
                    "Patient and "
                    "Appointment also keep past versions (vread and [type]/[id]/_history). "
                    "Change feed (every versioned type): GET [type]?_lastUpdated="
                    "gt<T>&_sort=_lastUpdated, follow every next link, then poll again with T "
                    "= the newest meta.lastUpdated seen, exactly as written; every change is "
                    "returned once (a search waits for changes being written to commit). "
                    "JSON only: a request for XML is 406. "
                    "dateTimes with a time must carry an offset."
                ),
                "security": {
                    "description": (
                        "Send 'Authorization: Bearer <API key>'. A key belongs to one "
                        "organization and sees only its data; create one with "
                        "`careline apikey create NAME --organization ORG`."
                    )
                },
                "resource": resources,
            }
        ],
    }
