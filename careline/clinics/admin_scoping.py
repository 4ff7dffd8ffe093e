"""Django admin that shows each staff member only their practices' rows."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from careline.clinics.models import StaffMembership, StaffRole
from careline.clinics.scoping import ScopedQuerySet

EDITOR_ROLES = {StaffRole.ORGANIZATION_ADMIN, StaffRole.PRACTICE_MANAGER}


def _roles(request: HttpRequest) -> set[str]:
    cached = getattr(request, "_careline_roles", None)
    if cached is None:
        cached = set(
            StaffMembership.objects.filter(user=request.user).values_list("role", flat=True)
        )
        request._careline_roles = cached
    return cached


class ScopedAdmin(admin.ModelAdmin):
    """Rows, choices and permissions all follow the user's practice memberships."""

    # Front desk may edit these (e.g. fix a patient's number); everything else is managers'.
    front_desk_may_edit = False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).visible_to(request.user)

    def _limit(self, db_field, request: HttpRequest, kwargs: dict) -> None:
        manager = db_field.remote_field.model._default_manager
        if isinstance(manager.get_queryset(), ScopedQuerySet):
            kwargs["queryset"] = manager.get_queryset().visible_to(request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        self._limit(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        self._limit(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or bool(_roles(request))

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser or bool(_roles(request))

    def _may_edit(self, request: HttpRequest) -> bool:
        if request.user.is_superuser:
            return True
        roles = _roles(request)
        return bool(roles & EDITOR_ROLES) or (self.front_desk_may_edit and bool(roles))

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._may_edit(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_edit(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser or StaffRole.ORGANIZATION_ADMIN in _roles(request)
