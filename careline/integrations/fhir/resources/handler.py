"""What every resource handler builds on: the request context, the handler classes, and
the conversions several resources share (names, phone numbers, instants, references)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import OperationalError, models
from django.db.models import Q, QuerySet

from careline.clinics.models import Organization
from careline.clinics.validators import normalize_phone
from careline.integrations.fhir.errors import FhirError, not_found, unknown_reference
from careline.integrations.fhir.search import (
    any_of,
    date_q,
    parse_pk,
    reference_pk,
    search_parameter,
)
from careline.patients.identifiers import default_identifier_system
from careline.versions import restore, settled_before


@dataclass(frozen=True)
class Context:
    organization: Organization
    base_url: str  # absolute, ending in "/"
    # The system of identifiers the client sends without one (its API key's namespace).
    identifier_system: str = ""

    @property
    def namespace(self) -> str:
        return self.identifier_system or default_identifier_system(self.organization.slug)


@dataclass(frozen=True)
class SearchParameter:
    type: str
    documentation: str


LOGICAL_ID = SearchParameter("token", "Logical id.")
LAST_UPDATED = SearchParameter(
    "date",
    "meta.lastUpdated, with FHIR prefixes and partial dates (UTC when no offset is given). "
    "For a change feed sort with _sort=_lastUpdated and follow the Bundle's next links.",
)


@dataclass(frozen=True)
class Version:
    """One stored version of a resource: `obj` as it was then."""

    version: int
    last_updated: datetime
    obj: Any


class Handler:
    """One FHIR resource type: read, search and, where supported, create and update."""

    resource_type: ClassVar[str]
    writable: ClassVar[bool] = True
    documentation: ClassVar[str] = ""
    search_parameters: ClassVar[dict[str, SearchParameter]] = {}

    def get(self, ctx: Context, resource_id: str) -> Any:
        raise NotImplementedError

    def search(
        self, ctx: Context, params: dict[str, list[str]], offset: int, count: int
    ) -> tuple[int, list[Any]]:
        raise NotImplementedError

    def render(self, ctx: Context, obj: Any) -> dict[str, Any]:
        raise NotImplementedError

    # Whether each version is stored as well (vread and _history): Patient and Appointment.
    keeps_history: ClassVar[bool] = False

    @property
    def versioned(self) -> bool:
        """Whether this type is versioned: meta.versionId and meta.lastUpdated, ETag,
        If-Match and the _lastUpdated change feed."""
        return "_lastUpdated" in self.search_parameters

    def feed_key(self, item: Any) -> str:
        """What a change feed's next link carries after the last change time to resume
        from (the tie-breaker of changes made at one time): the row's id."""
        return str(item.pk)

    def read_feed_key(self, raw: str) -> Any:
        """The key `feed_key` wrote, None when `raw` is not one."""
        return parse_pk(raw)

    def create(self, ctx: Context, resource: Any) -> Any:
        raise FhirError(405, f"{self.resource_type} is read-only here.", code="not-supported")

    def update(self, ctx: Context, obj: Any, resource: Any) -> Any:
        raise FhirError(405, f"{self.resource_type} is read-only here.", code="not-supported")


class ModelHandler(Handler):
    """A resource type stored as one Django model, searched with querysets."""

    ordering: ClassVar[tuple[str, ...]] = ("id",)

    def queryset(self, ctx: Context) -> QuerySet:
        raise NotImplementedError

    def get(self, ctx: Context, resource_id: str) -> models.Model:
        pk = parse_pk(resource_id)
        obj = self.queryset(ctx).filter(pk=pk).first() if pk else None
        if obj is None:
            raise not_found(self.resource_type, resource_id)
        return obj

    def search(
        self,
        ctx: Context,
        params: dict[str, list[str]],
        offset: int,
        count: int,
        *,
        changed_after: tuple[datetime, int] | None = None,
    ) -> tuple[int, list[Any]]:
        """`changed_after` (last_updated, id) sorts by change and pages from that key."""
        qs = self.queryset(ctx)
        for name, values in params.items():
            with search_parameter(name):
                for value in values:
                    qs = qs.filter(self.filter(ctx, name, value, params))
        if changed_after is not None or "_lastUpdated" in params:
            qs = qs.filter(self.settled(ctx, qs.model))
        if changed_after is None:
            qs = qs.order_by(*self.ordering)
            total = qs.count()
            return total, list(qs[offset : offset + count]) if count else []
        qs = qs.order_by("last_updated", "id")
        total = qs.count()
        at, pk = changed_after
        qs = qs.filter(Q(last_updated__gt=at) | Q(last_updated=at, id__gt=pk))
        return total, list(qs[:count]) if count else []

    def settled(self, ctx: Context, model: type[models.Model]) -> Q:
        """Only changes that have committed along with every earlier one, so a client that
        polls `gt` the newest time it saw never skips a change committed late."""
        horizon = settled_horizon(ctx, model)
        return Q() if horizon is None else Q(last_updated__lt=horizon)

    def filter_lastUpdated(self, ctx: Context, value: str, params) -> Q:  # noqa: N802
        return filter_last_updated(value)

    def versions(self, ctx: Context, obj: Any) -> list[Version]:
        """The stored versions of `obj`, newest first (the current one at least)."""
        kept = [
            Version(row.version, row.last_updated, restore(type(obj), row.fields))
            for row in obj.versions.order_by("-version")
        ]
        if not kept or kept[0].version != obj.version:
            # A row from before versions were kept: its current state is all we have.
            kept.insert(0, Version(obj.version, obj.last_updated, obj))
        else:
            kept[0] = Version(obj.version, obj.last_updated, obj)
        return kept

    def filter(self, ctx: Context, name: str, value: str, params: dict[str, list[str]]) -> Q:
        build = getattr(self, f"filter_{name.lstrip('_').replace('-', '_')}")
        return any_of(value, lambda v: build(ctx, v.strip(), params))

    def filter_id(self, ctx: Context, value: str, params) -> Q:
        return Q(pk=parse_pk(value)) if parse_pk(value) else Q(pk__in=[])


def settled_horizon(ctx: Context, *tables: type[models.Model]) -> datetime | None:
    """A time before which every change of these tables' rows in the organization has
    committed (None when all stored changes are), for a resource built from several
    tables: a change feed returns only what was stamped before it."""
    horizons = []
    for model in tables:
        try:
            horizon = settled_before(model, ctx.organization.pk)
        except OperationalError as exc:
            raise FhirError(
                503,
                "Changes are being written (a large import?); try again shortly.",
                code="transient",
                headers={"Retry-After": "10"},
            ) from exc
        if horizon is not None:
            horizons.append(horizon)
    return min(horizons, default=None)


def filter_last_updated(value: str) -> Q:
    """_lastUpdated: FHIR date search on the change time, UTC when no offset is given."""
    return date_q("last_updated", value, UTC)


class EditableModelHandler(ModelHandler):
    """A stored resource that clients create and update: both come down to `save`, a new
    one starting as an empty row of the caller's organization."""

    model: ClassVar[type[models.Model]]

    def queryset(self, ctx: Context) -> QuerySet:
        return self.model.objects.filter(organization=ctx.organization)

    def create(self, ctx: Context, resource: Any) -> Any:
        return self.save(ctx, self.model(organization=ctx.organization), resource)

    def update(self, ctx: Context, obj: Any, resource: Any) -> Any:
        return self.save(ctx, obj, resource)

    def save(self, ctx: Context, obj: Any, resource: Any) -> Any:
        raise NotImplementedError


class PersonNameFilters:
    """The family= and given= searches of resources that name a person."""

    def filter_family(self, ctx, value, params) -> Q:
        return Q(family_name__istartswith=value)

    def filter_given(self, ctx, value, params) -> Q:
        return Q(given_name__istartswith=value)


def check_fields(obj: models.Model, paths: dict[str, str]) -> None:
    """Django's own field validation (lengths, e-mail, time zone), reported as FHIR paths."""
    exclude = [f.name for f in obj._meta.fields if f.name not in paths]
    try:
        obj.clean_fields(exclude=exclude)
    except ValidationError as exc:
        problems = [f"{paths[field]}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
        raise FhirError(
            422, "; ".join(problems), code="value", expression=[paths[f] for f in exc.message_dict]
        ) from exc


def refuse_duplicate(clashes: QuerySet, obj: models.Model | None, path: str, what: str) -> None:
    """409 when a row other than `obj` already holds the identifier `clashes` looks for;
    the message reads "<Type>/<id> <what>"."""
    clash = clashes.exclude(pk=obj.pk if obj is not None else None).first()
    if clash:
        raise FhirError(
            409, f"{path.split('.')[0]}/{clash.pk} {what}", code="duplicate", expression=[path]
        )


def phone(value: str | None, path: str, region: str | None = None) -> str:
    try:
        return normalize_phone(value or "", region)
    except ValidationError as exc:
        raise FhirError(400, f"{path}: {' '.join(exc.messages)}", expression=[path]) from exc


def pick_name(names: list | None):
    names = names or []
    for use in ("official", "usual", None):
        for name in names:
            if use is None or name.use == use:
                return name
    return None


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def resolve(reference: str, resource_type: str, path: str, qs: QuerySet) -> models.Model:
    pk = reference_pk(reference, resource_type)
    obj = qs.filter(pk=pk).first() if pk else None
    if obj is None:
        raise unknown_reference(reference, path)
    return obj
