"""FHIR R4 REST endpoints: thin HTTP handling around the resource handlers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError as PydanticValidationError

from careline.integrations.api_keys import ApiKeyError, api_key_from_request
from careline.integrations.fhir.capability import capability_statement
from careline.integrations.fhir.errors import FhirError, from_validation_error, operation_outcome
from careline.integrations.fhir.registry import HANDLERS
from careline.integrations.fhir.resources.handler import Context, Handler, Version
from careline.integrations.fhir.search import (
    COMMON_PARAMETERS,
    page_cursor,
    page_offset,
    page_size,
    parse_pk,
    sort_by_last_updated,
)

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"
ACCEPTED_BODY_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
# What a client may ask for and get JSON (Accept or _format); XML and Turtle are not served.
JSON_TYPES = ACCEPTED_BODY_TYPES | {"json", "*/*", "application/*"}
# A FHIR dateTime or instant with a time: the time must carry its offset (Z or ±hh:mm).
TIME_WITHOUT_OFFSET = re.compile(r"^-?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


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
            _require_json_acceptable(request)
            try:
                api_key = api_key_from_request(request)
            except ApiKeyError as exc:
                raise FhirError(
                    401, str(exc), code="login", headers={"WWW-Authenticate": "Bearer"}
                ) from exc
            base = request.build_absolute_uri("/fhir/R4/")
            ctx = Context(
                organization=api_key.organization,
                base_url=base,
                identifier_system=api_key.identifier_system,
            )
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
    try:
        _require_json_acceptable(request)
    except FhirError as exc:
        return error_response(exc)
    return fhir_response(capability_statement(request.build_absolute_uri("/fhir/R4/")))


def _require_json_acceptable(request: HttpRequest) -> None:
    """406 when the client asks only for a format other than JSON (XML, Turtle), rather
    than answering JSON it did not ask for."""
    formats = request.GET.getlist("_format")
    if formats:
        wanted = formats[-1].split(";")[0].strip().lower()
        if wanted not in JSON_TYPES:
            raise FhirError(
                406,
                f"_format '{formats[-1]}' is not served here; this server speaks JSON only "
                "(_format=json or application/fhir+json).",
                code="not-supported",
            )
        return
    accept = request.headers.get("Accept", "").strip()
    if not accept:
        return
    for item in accept.split(","):
        media, *parameters = (part.strip() for part in item.split(";"))
        quality = next((p[2:] for p in parameters if p.replace(" ", "").startswith("q=")), "1")
        try:
            acceptable = float(quality) > 0
        except ValueError:
            acceptable = True
        if acceptable and media.lower() in JSON_TYPES:
            return
    raise FhirError(
        406,
        f"Accept '{accept[:100]}' asks for no format served here; this server speaks JSON "
        "only: send Accept: application/fhir+json.",
        code="not-supported",
    )


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
        obj = handler.get(ctx, resource_id)
        headers = _version_headers(obj)
        if headers and request.headers.get("If-None-Match", "").strip() == headers["ETag"]:
            # Conditional read: the client's copy is current.
            response = HttpResponse(status=304)
            for name, value in headers.items():
                response[name] = value
            return response
        try:
            return fhir_response(_render(ctx, handler, obj), **headers)
        except (PydanticValidationError, ValueError, OverflowError) as exc:
            issue = _unreadable(handler, obj, exc)
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
        obj = _update(request, ctx, handler, handler.get(ctx, resource_id), resource)
        return fhir_response(_render(ctx, handler, obj), **_version_headers(obj))
    raise _method_not_allowed(request, "GET, PUT")


@fhir_endpoint
def history_endpoint(
    request: HttpRequest, ctx: Context, resource_type: str, resource_id: str
) -> HttpResponse:
    """The instance's history: a Bundle of type history, newest version first."""
    handler = _versioned_handler(resource_type)
    if request.method not in ("GET", "HEAD"):
        raise _method_not_allowed(request, "GET")
    versions = handler.versions(ctx, handler.get(ctx, resource_id))
    base = f"{ctx.base_url}{handler.resource_type}/{resource_id}"
    entries = []
    for version in versions:
        rendered = _render_version(ctx, handler, version)
        entries.append(
            {
                "fullUrl": f"{base}",
                "resource": rendered,
                "request": {
                    "method": "POST" if version.version == 1 else "PUT",
                    "url": handler.resource_type
                    if version.version == 1
                    else f"{handler.resource_type}/{resource_id}",
                },
                "response": {
                    "status": "201 Created" if version.version == 1 else "200 OK",
                    "etag": f'W/"{version.version}"',
                    "lastModified": exact_instant(version.last_updated),
                },
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": f"{base}/_history"}],
        "entry": entries,
    }
    return fhir_response(bundle)


@fhir_endpoint
def vread_endpoint(
    request: HttpRequest, ctx: Context, resource_type: str, resource_id: str, version_id: str
) -> HttpResponse:
    handler = _versioned_handler(resource_type)
    if request.method not in ("GET", "HEAD"):
        raise _method_not_allowed(request, "GET")
    wanted = parse_pk(version_id)
    for version in handler.versions(ctx, handler.get(ctx, resource_id)):
        if version.version == wanted:
            headers = {
                "ETag": f'W/"{version.version}"',
                "Last-Modified": http_date(version.last_updated.timestamp()),
            }
            return fhir_response(_render_version(ctx, handler, version), **headers)
    raise FhirError(
        404,
        f"{handler.resource_type}/{resource_id} has no version '{version_id}'; see "
        f"{handler.resource_type}/{resource_id}/_history.",
        code="not-found",
    )


def exact_instant(value: datetime) -> str:
    """meta.lastUpdated to the microsecond, always: a client polls `gt` the value it saw,
    and FHIR reads `gt` a value given to the second as "after that whole second"."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _versioned_handler(resource_type: str) -> Handler:
    handler = _handler(resource_type)
    if not handler.keeps_history:
        kept = ", ".join(name for name, h in HANDLERS.items() if h.keeps_history)
        raise FhirError(
            404,
            f"{handler.resource_type} keeps "
            + ("only its current version" if handler.versioned else "no versions")
            + f" here; vread and _history are supported for {kept}.",
            code="not-supported",
        )
    return handler


def _version_headers(obj: Any) -> dict[str, str]:
    """ETag and Last-Modified of a versioned resource (none for the others)."""
    version = getattr(obj, "version", None)
    if version is None:
        return {}
    return {
        "ETag": f'W/"{version}"',
        "Last-Modified": http_date(obj.last_updated.timestamp()),
    }


def _if_match_version(request: HttpRequest, handler: Handler) -> int | None:
    """The version an If-Match header names (W/"3", "3" or 3); None when there is none."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    if not handler.versioned:
        raise FhirError(
            400,
            f"If-Match is not supported for {handler.resource_type}: it keeps no versions.",
            code="not-supported",
        )
    value = header.strip().removeprefix("W/").strip('"')
    version = parse_pk(value)
    if version is None:
        raise FhirError(400, f"If-Match must name a version, e.g. W/\"3\"; got '{header[:40]}'.")
    return version


def _update(request: HttpRequest, ctx: Context, handler: Handler, obj: Any, resource: Any) -> Any:
    """Update `obj`; with If-Match only when it is still the version the client names."""
    expected = _if_match_version(request, handler)
    if expected is None:
        return handler.update(ctx, obj, resource)
    with transaction.atomic():
        # Locked, so no other change slips in between the check and the update.
        current = (
            type(obj)
            .objects.select_for_update()
            .filter(pk=obj.pk)
            .values_list("version", flat=True)
            .first()
        )
        if current != expected:
            raise FhirError(
                412,
                f"{handler.resource_type}/{obj.pk} is at version {current}, not {expected} "
                "(If-Match): it changed since you read it. Read it again, then update.",
                code="conflict",
            )
        return handler.update(ctx, obj, resource)


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
    base = f"{ctx.base_url}{handler.resource_type}"
    query = [(k, v) for k, values in filters.items() for v in values]
    if sort_by_last_updated(params.get("_sort", []), handler.versioned, handler.resource_type):
        # Keyset paging by (last_updated, id): a change made while a client pages moves
        # the resource past the page it is reading, never into a page it has read.
        after = page_cursor((params.get("_cursor") or [None])[-1], handler.read_feed_key)
        total, items = handler.search(ctx, filters, 0, count, changed_after=after)
        query += [("_sort", "_lastUpdated"), ("_count", str(count))]
        self_query = query + ([("_cursor", params["_cursor"][-1])] if "_cursor" in params else [])
        links = [{"relation": "self", "url": f"{base}?{urlencode(self_query)}"}]
        if count and len(items) == count:
            last = items[-1]
            cursor = f"{exact_instant(last.last_updated)}|{handler.feed_key(last)}"
            links.append(
                {"relation": "next", "url": f"{base}?{urlencode(query + [('_cursor', cursor)])}"}
            )
    else:
        total, items = handler.search(ctx, filters, offset, count)

        def page_url(page_offset_value: int) -> str:
            paged = query + [("_count", str(count)), ("_offset", str(page_offset_value))]
            return f"{base}?{urlencode(paged)}"

        links = [{"relation": "self", "url": page_url(offset)}]
        if count and offset + count < total:
            links.append({"relation": "next", "url": page_url(offset + count)})
        if count and offset > 0:
            links.append({"relation": "previous", "url": page_url(max(0, offset - count))})
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
        obj = _update(request, ctx, handler, match, resource)
        return fhir_response(_render(ctx, handler, obj), 200, **_version_headers(obj))
    if _if_match_version(request, handler) is not None:
        raise FhirError(
            412,
            f"If-Match names a version, but no {handler.resource_type} matches the criteria.",
            code="conflict",
        )
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
    return fhir_response(rendered, 201, Location=location, **_version_headers(obj))


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
    _check_offsets(data, resource_type)
    model = get_fhir_model_class(resource_type)
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise from_validation_error(resource_type, exc) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise FhirError(
            400, f"The {resource_type} is not valid FHIR R4: {exc}", code="structure"
        ) from exc


def _check_offsets(value: Any, where: str) -> None:
    """A FHIR dateTime or instant with a time must carry its offset: without one, whose
    clock is 09:00 on? Refuse rather than guess (422 naming the element)."""
    if isinstance(value, str):
        if TIME_WITHOUT_OFFSET.match(value):
            raise FhirError(
                422,
                f"{where} '{value}' has a time but no offset; FHIR requires one: send "
                f"'{value}Z' for UTC or the local offset, e.g. '{value}-05:00'.",
                code="value",
                expression=[where],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_offsets(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_offsets(item, f"{where}[{i}]")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _render(ctx: Context, handler: Handler, obj: Any) -> dict[str, Any]:
    """Serialize through fhir.resources so nothing invalid leaves the server. A versioned
    resource carries its meta.versionId and meta.lastUpdated."""
    resource = handler.render(ctx, obj)
    if getattr(obj, "version", None) is not None and isinstance(obj.last_updated, datetime):
        resource["meta"] = {
            **resource.get("meta", {}),
            "versionId": str(obj.version),
            "lastUpdated": exact_instant(obj.last_updated),
        }
    model = get_fhir_model_class(handler.resource_type)
    return model.model_validate(resource).model_dump(mode="json", exclude_none=True)


def _render_version(ctx: Context, handler: Handler, version: Version) -> dict[str, Any]:
    return _render(ctx, handler, version.obj)
