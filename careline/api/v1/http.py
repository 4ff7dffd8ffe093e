"""HTTP plumbing of the JSON API: bearer authentication, routing by method, strict parsing
of query strings and bodies, keyset pagination and JSON errors.

Every failure leaves as `{"error": {"code", "message"}}` with its status; a request the API
cannot make sense of is the caller's mistake (4xx) and says what to fix.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from careline.integrations.api_keys import ApiKeyError, api_key_from_request
from careline.integrations.models import ApiKey

logger = logging.getLogger(__name__)

# Database integer keys are signed 64-bit; a larger id cannot name a row, and passing one to
# the database is an overflow error rather than "not found".
MAX_ID = 2**63 - 1
# Dates far outside a clinic's life only overflow time zone arithmetic.
FIRST_YEAR, LAST_YEAR = 1900, 2999
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MAX_IDS = 1000
JSON_TYPES = {"application/json"}

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal_error",
}

Handler = Callable[..., HttpResponse]


class ApiError(Exception):
    """A request the API refuses; `fields` names what is wrong in the body, field by field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, **headers: str) -> JsonResponse:
    response = JsonResponse(data, status=status, safe=False, encoder=DjangoJSONEncoder)
    for name, value in headers.items():
        response[name] = value
    return response


def error_response(exc: ApiError) -> JsonResponse:
    error: dict[str, Any] = {"code": ERROR_CODES[exc.status], "message": exc.message}
    if exc.fields:
        error["fields"] = exc.fields
    return json_response({"error": error}, exc.status, **exc.headers)


def route(*, public: bool = False, **handlers: Handler) -> Callable[..., HttpResponse]:
    """One URL's view: `GET=handler, POST=handler…`, each called as
    handler(request, api_key, **url_kwargs). `public` routes skip authentication and get
    None for the key. The methods are kept on the view for the OpenAPI completeness test."""

    allowed = ", ".join(handlers)

    @csrf_exempt  # Bearer keys, not cookies: there is no session for a forged request to ride.
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        try:
            api_key = None if public else _authenticate(request)
            handler = handlers.get(request.method or "")
            if handler is None:
                raise ApiError(
                    405,
                    f"{request.method} is not allowed here; use {allowed}.",
                    headers={"Allow": allowed},
                )
            return handler(request, api_key, **kwargs)
        except ApiError as exc:
            return error_response(exc)
        except PermissionDenied as exc:
            return error_response(ApiError(403, str(exc)))
        except RequestDataTooBig:
            return error_response(ApiError(413, "The request body is too large."))
        except Exception:
            # A bug, not bad input: logged for us (method and path carry ids only).
            logger.exception("API request failed: %s %s", request.method, request.path)
            return error_response(ApiError(500, "Internal error; it has been logged."))

    view.allowed_methods = tuple(handlers)
    return view


def _authenticate(request: HttpRequest) -> ApiKey:
    try:
        return api_key_from_request(request)
    except ApiKeyError as exc:
        raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


@csrf_exempt
def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(
        ApiError(
            404,
            f"'{request.path}' is not an API endpoint; see "
            f"{request.build_absolute_uri('/api/v1/openapi.json')} for the ones there are.",
        )
    )


def get_or_404(queryset: QuerySet, object_id: int, what: str) -> Model:
    """The row of an organization-scoped queryset; another organization's row is not found."""
    found = queryset.filter(pk=object_id).first() if 0 < object_id <= MAX_ID else None
    if found is None:
        raise ApiError(404, f"No {what} {object_id} in this organization.")
    return found


# --- query strings ------------------------------------------------------------------------


def query_params(request: HttpRequest, allowed: Iterable[str]) -> dict[str, str]:
    """The query string as name -> value, refusing names the endpoint does not take and
    repeated names (which one would win is a guess)."""
    allowed = set(allowed)
    unknown = sorted(set(request.GET) - allowed)
    if unknown:
        raise ApiError(
            400,
            f"Unknown query parameter(s): {', '.join(unknown)}. "
            f"This endpoint takes: {', '.join(sorted(allowed)) or 'none'}.",
        )
    params = {}
    for name, values in request.GET.lists():
        if len(values) > 1:
            raise ApiError(400, f"Give the query parameter '{name}' once.")
        if "\x00" in values[0]:
            raise ApiError(400, f"The query parameter '{name}' contains a NUL character.")
        params[name] = values[0]
    return params


def parse_id(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise ApiError(400, f"'{name}' must be a positive whole number (an id), not {value!r}.")
    return int(value)


def parse_choice(value: str, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ApiError(400, f"'{name}' must be one of {', '.join(choices)}; got {value!r}.")
    return value


def parse_bool(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise ApiError(400, f"'{name}' must be true or false; got {value!r}.")


def parse_int(value: str, name: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise ApiError(400, f"'{name}' must be a whole number from {low} to {high}; got {value!r}.")
    return int(value)


def _date_or_none(value: str) -> date | None:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    # fromisoformat also takes 20240105 and 2024-W01-1; the API documents one spelling.
    if value != day.isoformat() or not FIRST_YEAR <= day.year <= LAST_YEAR:
        return None
    return day


def parse_date(value: str, name: str) -> date:
    day = _date_or_none(value)
    if day is None:
        raise ApiError(
            400,
            f"'{name}' must be a date YYYY-MM-DD between {FIRST_YEAR} and {LAST_YEAR}; "
            f"got {value!r}.",
        )
    return day


# --- pagination -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Keyset pagination over rows ordered newest first by (`field`, id): the cursor is the
    last row's position, so a page costs one index range scan however deep it is."""

    field: str
    limit: int
    after: tuple[datetime, int] | None

    @classmethod
    def from_params(cls, params: dict[str, str], field: str) -> Page:
        limit = DEFAULT_LIMIT
        if "limit" in params:
            limit = parse_int(params["limit"], "limit", 1, MAX_LIMIT)
        after = _decode_cursor(params["cursor"]) if params.get("cursor") else None
        return cls(field=field, limit=limit, after=after)

    def rows(self, queryset: QuerySet) -> tuple[list[Model], str | None]:
        """This page's rows and the cursor of the next page (None on the last one)."""
        queryset = queryset.order_by(f"-{self.field}", "-id")
        if self.after is not None:
            moment, last_id = self.after
            queryset = queryset.filter(
                Q(**{f"{self.field}__lt": moment}) | Q(**{self.field: moment, "id__lt": last_id})
            )
        rows = list(queryset[: self.limit + 1])
        if len(rows) <= self.limit:
            return rows, None
        rows = rows[: self.limit]
        last = rows[-1]
        return rows, _encode_cursor(getattr(last, self.field), last.pk)


def _encode_cursor(moment: datetime, row_id: int) -> str:
    raw = json.dumps([moment.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment_text, row_id = json.loads(raw)
        moment = datetime.fromisoformat(moment_text)
        if (
            moment.tzinfo is None
            or not FIRST_YEAR <= moment.year <= LAST_YEAR
            or not isinstance(row_id, int)
            or not 0 < row_id <= MAX_ID
        ):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise ApiError(
            400, "The cursor is not one this API gave out; use the 'next' link as it is."
        ) from exc
    return moment, row_id


def page_response(
    request: HttpRequest, params: dict[str, str], data: list[Any], cursor: str | None
) -> JsonResponse:
    """A list response: {"data": [...], "next": URL of the next page or null}."""
    next_url = None
    if cursor is not None:
        query = {k: v for k, v in params.items() if k != "cursor"} | {"cursor": cursor}
        next_url = request.build_absolute_uri(f"{request.path}?{urlencode(query)}")
    return json_response({"data": data, "next": next_url})


# --- bodies ---------------------------------------------------------------------------------


def json_body(request: HttpRequest, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; an optional body may be empty."""
    if not request.body:
        if required:
            raise ApiError(400, "Send a JSON object as the request body.")
        return {}
    if request.content_type not in JSON_TYPES:
        raise ApiError(
            415, f"Content-Type '{request.content_type}' is not supported; send application/json."
        )
    try:
        data = json.loads(request.body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise ApiError(400, "The request body is nested too deeply.") from exc
    if not isinstance(data, dict):
        raise ApiError(400, f"The request body must be a JSON object, not {_json_type(data)}.")
    return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Body:
    """Reads fields of a JSON object, collecting every problem so the caller fixes them in
    one go: `finish()` raises one 422 naming each field."""

    def __init__(self, data: Any, known: Iterable[str], *, prefix: str = "", errors=None):
        self.prefix = prefix
        self.errors: dict[str, list[str]] = {} if errors is None else errors
        if not isinstance(data, dict):
            self.data: dict[str, Any] = {}
            self.fail("", f"must be an object, not {_json_type(data)}")
            return
        self.data = data
        for name in sorted(set(data) - set(known)):
            self.fail(name, f"is not a field here; known fields: {', '.join(sorted(known))}")

    def fail(self, name: str, message: str) -> None:
        where = f"{self.prefix}{name}" if name else self.prefix.rstrip(".") or "body"
        self.errors.setdefault(where, []).append(message)

    def nested(self, name: str, known: Iterable[str]) -> Body:
        return Body(
            self.data.get(name, {}), known, prefix=f"{self.prefix}{name}.", errors=self.errors
        )

    def text(self, name: str, *, required: bool = False, max_length: int | None = None) -> str:
        value = self.data.get(name)
        if value is None:
            if required:
                self.fail(name, "is required")
            return ""
        if not isinstance(value, str):
            self.fail(name, f"must be a string, not {_json_type(value)}")
            return ""
        if "\x00" in value:
            self.fail(name, "contains a NUL character")
            return ""
        if required and not value.strip():
            self.fail(name, "must not be blank")
        if max_length is not None and len(value) > max_length:
            self.fail(name, f"must be at most {max_length} characters")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, not {_json_type(value)}")
            return default
        return value

    def choice(self, name: str, choices: Iterable[str], default: str) -> str:
        choices = list(choices)
        value = self.data.get(name, default)
        if value not in choices or not isinstance(value, str):
            self.fail(name, f"must be one of {', '.join(repr(c) for c in choices)}")
            return default
        return value

    def ids(self, name: str, *, required: bool = False) -> tuple[int, ...]:
        value = self.data.get(name)
        if value is None:
            if required:
                self.fail(name, "is required")
            return ()
        if (
            not isinstance(value, list)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not all(0 < v <= MAX_ID for v in value)
        ):
            self.fail(name, "must be an array of ids (positive whole numbers)")
            return ()
        if len(value) > MAX_IDS:
            self.fail(name, f"may list at most {MAX_IDS} ids")
            return ()
        if required and not value:
            self.fail(name, "must list at least one id")
        return tuple(dict.fromkeys(value))

    def date(self, name: str) -> date | None:
        value = self.data.get(name)
        if value is None:
            return None
        day = _date_or_none(value) if isinstance(value, str) else None
        if day is None:
            self.fail(name, f"must be a date YYYY-MM-DD between {FIRST_YEAR} and {LAST_YEAR}")
        return day

    def moment(self, name: str) -> datetime | None:
        value = self.data.get(name)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or not FIRST_YEAR <= moment.year <= LAST_YEAR:
            self.fail(
                name,
                "must be an ISO 8601 date and time with its offset, e.g. 2026-03-01T09:00:00-06:00",
            )
            return None
        return moment

    def raw(self, name: str, *, required: bool = False) -> Any:
        if name not in self.data and required:
            self.fail(name, "is required")
        return self.data.get(name)

    def finish(self) -> None:
        if self.errors:
            summary = "; ".join(f"{k} {' and '.join(v)}" for k, v in self.errors.items())
            raise ApiError(422, f"The request body is not valid: {summary}.", fields=self.errors)
