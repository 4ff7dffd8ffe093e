"""What every resource handler builds on: the request context, the handler classes, and
the conversions several resources share (names, phone numbers, instants, references)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q, QuerySet

from careline.clinics.models import Organization
from careline.clinics.validators import normalize_phone
from careline.integrations.fhir.errors import FhirError, not_found, unknown_reference
from careline.integrations.fhir.search import any_of, parse_pk, reference_pk, search_parameter


@dataclass(frozen=True)
class Context:
    organization: Organization
    base_url: str  # absolute, ending in "/"


@dataclass(frozen=True)
class SearchParameter:
    type: str
    documentation: str


LOGICAL_ID = SearchParameter("token", "Logical id.")


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
        self, ctx: Context, params: dict[str, list[str]], offset: int, count: int
    ) -> tuple[int, list[Any]]:
        qs = self.queryset(ctx)
        for name, values in params.items():
            with search_parameter(name):
                for value in values:
                    qs = qs.filter(self.filter(ctx, name, value, params))
        qs = qs.order_by(*self.ordering)
        total = qs.count()
        return total, list(qs[offset : offset + count]) if count else []

    def filter(self, ctx: Context, name: str, value: str, params: dict[str, list[str]]) -> Q:
        build = getattr(self, f"filter_{name.lstrip('_').replace('-', '_')}")
        return any_of(value, lambda v: build(ctx, v.strip(), params))

    def filter_id(self, ctx: Context, value: str, params) -> Q:
        return Q(pk=parse_pk(value)) if parse_pk(value) else Q(pk__in=[])


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
