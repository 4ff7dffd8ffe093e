"""FHIR R4 REST endpoints: thin HTTP handling around the resource handlers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError as PydanticValidationError

from careline.integrations.api_keys import ApiKeyError, api_key_from_request
from careline.integrations.fhir.capability import capability_statement
from careline.integrations.fhir.errors import FhirError, from_validation_error, operation_outcome
from careline.integrations.fhir.registry import HANDLERS
from careline.integrations.fhir.resources.handler import Context, Handler
from careline.integrations.fhir.search import COMMON_PARAMETERS, page_offset, page_size

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"
ACCEPTED_BODY_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}


def fhir_response(data: dict[str, Any], status: int = 200, **headers: str) -> HttpResponse:
    response = HttpResponse(
        json.dumps(data, ensure_ascii=False), status=status, content_type=FHIR_JSON
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def error_response(exc: FhirError) -> HttpResponse:
    response = fhir_response(
        operation_outcome(exc.message, code=exc.code, expression=exc.expression), exc.status
    )
    for name, value in exc.headers.items():
        response[name] = value
    return response


def fhir_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Authenticate, and turn every failure into an OperationOutcome (never an HTML page)."""

    @csrf_exempt
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            try:
                api_key = api_key_from_request(request)
            except ApiKeyError as exc:
                raise FhirError(
                    401, str(exc), code="login", headers={"WWW-Authenticate": "Bearer"}
                ) from exc
            base = request.build_absolute_uri("/fhir/R4/")
            ctx = Context(organization=api_key.organization, base_url=base)
            if request.method in ("GET", "HEAD"):
                return view(request, ctx, *args, **kwargs)
            # A write and its answer are one unit: whatever fails after the row is saved
            # (rendering it back, a later check) leaves nothing stored.
            with transaction.atomic():
                return view(request, ctx, *args, **kwargs)
        except FhirError as exc:
            return error_response(exc)
        except RequestDataTooBig:
            return error_response(FhirError(413, "The request body is too large.", code="too-long"))
        except Exception:
            # A bug, not bad input: log it for us, tell the caller without internals.
            logger.exception("FHIR request failed: %s %s", request.method, request.path)
            return error_response(
                FhirError(500, "Internal error; it has been logged.", code="exception")
            )

    return wrapped


@csrf_exempt
def metadata(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return error_response(_method_not_allowed(request, "GET"))
    return fhir_response(capability_statement(request.build_absolute_uri("/fhir/R4/")))


@csrf_exempt
def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(
        FhirError(
            404,
            f"'{request.path}' is not a FHIR endpoint here. Supported: metadata, and "
            f"{', '.join(HANDLERS)} as [type] and [type]/[id]; see "
            f"{request.build_absolute_uri('/fhir/R4/metadata')}.",
            code="not-supported",
        )
    )


@fhir_endpoint
def type_endpoint(request: HttpRequest, ctx: Context, resource_type: str) -> HttpResponse:
    handler = _handler(resource_type)
    if request.method in ("GET", "HEAD"):
        return _search(request, ctx, handler, _query(request))
    if request.method == "POST":
        return _create(request, ctx, handler)
    if request.method == "PUT":
        return _conditional_update(request, ctx, handler)
    raise _method_not_allowed(request, "GET, POST, PUT")


@fhir_endpoint
def instance_endpoint(
    request: HttpRequest, ctx: Context, resource_type: str, resource_id: str
) -> HttpResponse:
    handler = _handler(resource_type)
    if resource_id == "_search" and request.method == "POST":
        return _search(request, ctx, handler, _form_query(request))
    if request.method in ("GET", "HEAD"):
        found = handler.get(ctx, resource_id)
        try:
            return fhir_response(_render(ctx, handler, found))
        except (PydanticValidationError, ValueError, OverflowError) as exc:
            issue = _unreadable(handler, found, exc)
            raise FhirError(
                422, issue["diagnostics"], code="processing", expression=issue["expression"]
            ) from exc
    if request.method == "PUT":
        _require_writable(handler)
        resource = _parse_resource(request, handler.resource_type)
        body_id = resource.id
        if body_id is not None and body_id != resource_id:
            raise FhirError(
                400,
                f"The body's id '{body_id}' differs from the URL's '{resource_id}'.",
                expression=[f"{handler.resource_type}.id"],
            )
        obj = handler.update(ctx, handler.get(ctx, resource_id), resource)
        return fhir_response(_render(ctx, handler, obj))
    raise _method_not_allowed(request, "GET, PUT")


def _handler(resource_type: str) -> Handler:
    handler = HANDLERS.get(resource_type)
    if handler is None:
        raise FhirError(
            404,
            f"Resource type '{resource_type}' is not supported. Supported: {', '.join(HANDLERS)}.",
            code="not-supported",
        )
    return handler


def _method_not_allowed(request: HttpRequest, allowed: str) -> FhirError:
    return FhirError(
        405,
        f"{request.method} is not supported on {request.path}; use {allowed}.",
        code="not-supported",
        headers={"Allow": allowed},
    )


def _require_writable(handler: Handler) -> None:
    if not handler.writable:
        raise FhirError(
            405,
            f"{handler.resource_type} is read-only here (see the CapabilityStatement).",
            code="not-supported",
            headers={"Allow": "GET"},
        )


def _query(request: HttpRequest) -> dict[str, list[str]]:
    return {key: request.GET.getlist(key) for key in request.GET}


def _form_query(request: HttpRequest) -> dict[str, list[str]]:
    params = _query(request)
    for key, values in request.POST.lists():
        params.setdefault(key, []).extend(values)
    return params


def _check_text(value: Any, where: str, expression: str | None = None) -> None:
    """Reject NUL characters, which no database column can store; the error names the
    element (`where`) or the given `expression`."""
    if isinstance(value, str):
        if "\x00" in value:
            raise FhirError(
                400,
                f"{where} contains a NUL character (\\u0000).",
                expression=[expression or where],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where, expression)
            _check_text(item, f"{where}.{key}", expression)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{where}[{i}]", expression)


def _search_params(handler: Handler, params: dict[str, list[str]]) -> dict[str, list[str]]:
    for name, values in params.items():
        _check_text(name, "A search parameter's name", "_search")
        _check_text(values, f"The search parameter {name}", name)
    filters = {k: v for k, v in params.items() if k not in COMMON_PARAMETERS}
    unknown = sorted(set(filters) - set(handler.search_parameters))
    if unknown:
        raise FhirError(
            400,
            f"Unsupported search parameter(s) for {handler.resource_type}: {', '.join(unknown)}. "
            f"Supported: {', '.join(handler.search_parameters) or 'none'}, "
            "_count and _offset.",
            code="not-supported",
        )
    return filters


def _search(
    request: HttpRequest, ctx: Context, handler: Handler, params: dict[str, list[str]]
) -> HttpResponse:
    filters = _search_params(handler, params)
    count = page_size((params.get("_count") or [None])[-1])
    offset = page_offset((params.get("_offset") or [None])[-1])
    if (params.get("_summary") or [""])[-1] == "count":
        count = 0
    total, items = handler.search(ctx, filters, offset, count)
    base = f"{ctx.base_url}{handler.resource_type}"

    def page_url(page_offset_value: int) -> str:
        query = [(k, v) for k, values in filters.items() for v in values]
        query += [("_count", str(count)), ("_offset", str(page_offset_value))]
        return f"{base}?{urlencode(query)}"

    entries, unreadable = [], []
    for item in items:
        try:
            resource = _render(ctx, handler, item)
        except (PydanticValidationError, ValueError, OverflowError) as exc:
            # A row stored before a door refused its kind must not hide the others.
            unreadable.append(_unreadable(handler, item, exc))
            continue
        entries.append(
            {
                "fullUrl": f"{base}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
    if unreadable:
        entries.append(
            {
                "resource": {"resourceType": "OperationOutcome", "issue": unreadable},
                "search": {"mode": "outcome"},
            }
        )
    links = [{"relation": "self", "url": page_url(offset)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": page_url(offset + count)})
    if count and offset > 0:
        links.append({"relation": "previous", "url": page_url(max(0, offset - count))})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    }
    if not bundle["entry"]:
        del bundle["entry"]
    return fhir_response(bundle)


def _unreadable(handler: Handler, item: Any, exc: Exception) -> dict[str, Any]:
    """An issue for a stored row that cannot be shown as valid FHIR; logged with its id."""
    item_id = getattr(item, "pk", None) or getattr(item, "id", "?")
    logger.warning(
        "FHIR search: %s/%s cannot be rendered (%s)",
        handler.resource_type,
        item_id,
        type(exc).__name__,
    )
    return {
        "severity": "warning",
        "code": "processing",
        "diagnostics": f"{handler.resource_type}/{item_id} matches but holds data that is "
        "not valid FHIR (e.g. a date out of range); correct it with PUT.",
        "expression": [handler.resource_type],
    }


def _create(request: HttpRequest, ctx: Context, handler: Handler) -> HttpResponse:
    _require_writable(handler)
    resource = _parse_resource(request, handler.resource_type)
    # Conditional create: the If-None-Exist header, or (as some clients send it) the query.
    condition = request.headers.get("If-None-Exist")
    criteria = parse_qs(condition, keep_blank_values=True) if condition else _query(request)
    criteria = {k: v for k, v in criteria.items() if k not in COMMON_PARAMETERS}
    if criteria:
        match = _only_match(
            ctx,
            handler,
            criteria,
            lambda total: (
                f"If-None-Exist matches {total} {handler.resource_type} resources; "
                "make the criteria specific to one."
            ),
        )
        if match is not None:
            return fhir_response(_render(ctx, handler, match), 200)
    return _created(ctx, handler, handler.create(ctx, resource))


def _conditional_update(request: HttpRequest, ctx: Context, handler: Handler) -> HttpResponse:
    _require_writable(handler)
    criteria = {k: v for k, v in _query(request).items() if k not in COMMON_PARAMETERS}
    if not criteria:
        raise FhirError(
            400,
            f"PUT {handler.resource_type} needs search criteria (conditional update, e.g. "
            f"?identifier=system|value) or an id: PUT {handler.resource_type}/<id>.",
        )
    resource = _parse_resource(request, handler.resource_type)
    match = _only_match(
        ctx,
        handler,
        criteria,
        lambda total: (
            f"The criteria match {total} {handler.resource_type} resources; "
            "a conditional update needs them to match at most one."
        ),
    )
    if match is not None:
        if resource.id is not None and resource.id != str(match.pk):
            raise FhirError(
                400,
                f"The body's id '{resource.id}' is not the matching resource's id.",
                expression=[f"{handler.resource_type}.id"],
            )
        obj = handler.update(ctx, match, resource)
        return fhir_response(_render(ctx, handler, obj), 200)
    return _created(ctx, handler, handler.create(ctx, resource))


def _only_match(
    ctx: Context,
    handler: Handler,
    criteria: dict[str, list[str]],
    too_many: Callable[[int], str],
) -> Any:
    """The one resource the criteria find, None when none; 412 when several."""
    total, matches = handler.search(ctx, _search_params(handler, criteria), 0, 2)
    if total > 1:
        raise FhirError(412, too_many(total), code="multiple-matches")
    return matches[0] if total == 1 else None


def _created(ctx: Context, handler: Handler, obj: Any) -> HttpResponse:
    rendered = _render(ctx, handler, obj)
    location = f"{ctx.base_url}{handler.resource_type}/{rendered['id']}"
    return fhir_response(rendered, 201, Location=location)


def _parse_resource(request: HttpRequest, resource_type: str) -> Any:
    """The request body as a validated fhir.resources model of `resource_type`."""
    content_type = request.content_type or ""
    if content_type and content_type not in ACCEPTED_BODY_TYPES:
        raise FhirError(
            415,
            f"Content-Type '{content_type}' is not supported; send application/fhir+json.",
            code="not-supported",
        )
    try:
        data = json.loads(request.body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError(
            400, f"The request body is not valid JSON: {exc}.", code="structure"
        ) from exc
    except RecursionError as exc:
        raise FhirError(400, "The request body is nested too deeply.", code="structure") from exc
    if not isinstance(data, dict):
        raise FhirError(
            400,
            f"The request body must be a JSON object (a FHIR {resource_type}), "
            f"not a {type(data).__name__}.",
            code="structure",
        )
    if data.get("resourceType") != resource_type:
        raise FhirError(
            400,
            f"The body's resourceType is {json.dumps(data.get('resourceType'))}; this "
            f"endpoint takes {resource_type}.",
            code="structure",
            expression=["resourceType"],
        )
    _check_text(data, resource_type)
    model = get_fhir_model_class(resource_type)
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise from_validation_error(resource_type, exc) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise FhirError(
            400, f"The {resource_type} is not valid FHIR R4: {exc}", code="structure"
        ) from exc


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _render(ctx: Context, handler: Handler, obj: Any) -> dict[str, Any]:
    """Serialize through fhir.resources so nothing invalid leaves the server."""
    model = get_fhir_model_class(handler.resource_type)
    return model.model_validate(handler.render(ctx, obj)).model_dump(mode="json", exclude_none=True)
