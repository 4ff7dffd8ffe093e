"""FHIR errors: every failure leaves the API as an OperationOutcome a developer can act on."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError as PydanticValidationError


class FhirError(Exception):
    """A request the API refuses; `status` is the HTTP status, `code` the FHIR issue type."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "invalid",
        expression: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.expression = expression or []
        self.headers = headers or {}


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(404, f"{resource_type}/{resource_id} is not known.", code="not-found")


def unknown_reference(reference: str, path: str) -> FhirError:
    return FhirError(
        422,
        f"{path} refers to '{reference}', which is not known in this organization. "
        "Create it first, or use the id the server returned.",
        code="not-found",
        expression=[path],
    )


def from_validation_error(resource_type: str, exc: PydanticValidationError) -> FhirError:
    """Name each failing element the way FHIR does (Patient.name[0].family) with its reason."""
    problems = []
    paths = []
    for error in exc.errors()[:10]:
        path = resource_type
        for part in error.get("loc", ()):
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        paths.append(path)
        problems.append(f"{path}: {error.get('msg', 'invalid')}")
    more = len(exc.errors()) - len(problems)
    message = f"The {resource_type} is not valid FHIR R4: " + "; ".join(problems)
    if more > 0:
        message += f"; and {more} more"
    return FhirError(400, message, code="structure", expression=paths)


def operation_outcome(
    message: str,
    *,
    code: str = "invalid",
    severity: str = "error",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
