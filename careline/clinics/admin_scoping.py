"""The Django admin: for organization admins (and superusers) only, each seeing only the
organizations they administer. Rows, form choices (foreign keys, many-to-many, inlines),
relation filters, raw-id and autocomplete labels all go through `admin_scope`, which uses
the one mechanism (`ScopedQuerySet.administered_by`; staff logins:
`scoping.users_visible_to`) and shows nothing of a model it does not know how to scope.
A model admin that wants lookups of its rows audited (the patients' admin) defines
`record_lookup(request, obj, what)`.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest

from careline.clinics.models import StaffMembership, StaffRole
from careline.clinics.scoping import ScopedQuerySet, users_visible_to


def _roles(request: HttpRequest) -> set[str]:
    if not request.user.is_authenticated:
        return set()  # the login page asks before anyone has signed in
    cached = getattr(request, "_careline_roles", None)
    if cached is None:
        cached = set(
            StaffMembership.objects.filter(user=request.user).values_list("role", flat=True)
        )
        request._careline_roles = cached
    return cached


def is_organization_admin(request: HttpRequest) -> bool:
    """Who may use the Django admin at all: superusers and organization admins."""
    user = request.user
    if not (user.is_active and user.is_authenticated):
        return False
    return user.is_superuser or StaffRole.ORGANIZATION_ADMIN in _roles(request)


def admin_scope(queryset: models.QuerySet, request: HttpRequest) -> models.QuerySet:
    """The rows of `queryset` the admin may show this user: deny by default."""
    if isinstance(queryset, ScopedQuerySet):
        return queryset.administered_by(request.user)
    if queryset.model is get_user_model():
        return users_visible_to(queryset, request.user)
    return queryset if request.user.is_superuser else queryset.none()


def record_lookup(admin_site: admin.AdminSite, request: HttpRequest, obj, what: str) -> None:
    model_admin = admin_site._registry.get(type(obj))
    hook = getattr(model_admin, "record_lookup", None)
    if hook is not None:
        hook(request, obj, what)


class CarelineAdminSite(admin.AdminSite):
    site_header = "Careline administration"
    site_title = "Careline"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and is_organization_admin(request)

    def autocomplete_view(self, request: HttpRequest):
        return ScopedAutocompleteJsonView.as_view(admin_site=self)(request)


class ScopedAutocompleteJsonView(AutocompleteJsonView):
    def get_queryset(self):
        return admin_scope(super().get_queryset(), self.request)

    def serialize_result(self, obj, to_field_name):
        record_lookup(self.admin_site, self.request, obj, "admin autocomplete")
        return super().serialize_result(obj, to_field_name)


class ScopedRawIdWidget(ForeignKeyRawIdWidget):
    """A raw-id box whose label only names rows in scope (and audits the lookup)."""

    def __init__(self, rel, admin_site, request: HttpRequest, queryset, **kwargs):
        super().__init__(rel, admin_site, **kwargs)
        self.request, self.queryset = request, queryset

    def label_and_url_for_value(self, value):
        key = self.rel.get_related_field().name
        try:
            obj = self.queryset.get(**{key: value})
        except (ValueError, TypeError, ValidationError, self.rel.model.DoesNotExist):
            return "", ""
        record_lookup(self.admin_site, self.request, obj, "admin raw-id label")
        return super().label_and_url_for_value(value)


class ScopedFormFields:
    """Form choices (foreign keys, many-to-many, raw ids) limited to the user's scope."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        queryset = admin_scope(db_field.remote_field.model._default_manager.all(), request)
        kwargs["queryset"] = queryset
        if db_field.name in self.raw_id_fields:
            kwargs["widget"] = ScopedRawIdWidget(
                db_field.remote_field, self.admin_site, request, queryset, using=kwargs.get("using")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs["queryset"] = admin_scope(
            db_field.remote_field.model._default_manager.all(), request
        )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ScopedInline(ScopedFormFields, admin.TabularInline):
    def get_queryset(self, request: HttpRequest):
        return admin_scope(super().get_queryset(request), request)


class ScopedAdmin(ScopedFormFields, admin.ModelAdmin):
    """Rows, choices, actions and permissions follow the organizations the user administers."""

    def get_queryset(self, request: HttpRequest):
        return admin_scope(super().get_queryset(request), request)

    def get_list_filter(self, request: HttpRequest):
        # A plain relation filter lists every row of the related table; offer only those
        # the user's own rows point at.
        return [
            (name, admin.RelatedOnlyFieldListFilter) if self._is_relation(name) else name
            for name in super().get_list_filter(request)
        ]

    def _is_relation(self, name) -> bool:
        if not isinstance(name, str) or "__" in name:
            return False
        return self.model._meta.get_field(name).is_relation

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_organization_admin(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_organization_admin(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_organization_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_organization_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_organization_admin(request)
