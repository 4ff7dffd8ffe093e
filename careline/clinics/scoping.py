"""The one place that decides which rows a staff member may see.

Every model a staff member can reach declares how it hangs off a practice, either as
`practice_lookup` (an ORM path ending at a Practice) or a `scope_filter(practice_ids)`
classmethod for relations that need more than a path. Views, admin and APIs all go through
`visible_to(user)` on the model's queryset, so no view has to remember the rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import apps
from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class StaffRole(models.TextChoices):
    # Here rather than in models.py: the roles decide what a staff member sees.
    ORGANIZATION_ADMIN = "org_admin", "Organization admin"
    PRACTICE_MANAGER = "manager", "Practice manager"
    FRONT_DESK = "front_desk", "Front desk"


# Who outranks whom: nobody may grant a role above their own.
ROLE_RANK = {
    StaffRole.FRONT_DESK: 1,
    StaffRole.PRACTICE_MANAGER: 2,
    StaffRole.ORGANIZATION_ADMIN: 3,
}


def _clinic_model(name: str) -> type[models.Model]:
    # Looked up in the app registry, not imported: models.py builds its managers on
    # ScopedQuerySet below, so importing it here would make the two modules a cycle.
    return apps.get_model("clinics", name)


def visible_practice_ids(user: AbstractBaseUser | AnonymousUser) -> list[int] | None:
    """Practice ids the user may see; None means every practice (superusers)."""
    Practice, StaffMembership = _clinic_model("Practice"), _clinic_model("StaffMembership")
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if user.is_superuser:
        return None
    cached = getattr(user, "_careline_practice_ids", None)
    if cached is not None:
        return cached
    memberships = StaffMembership.objects.filter(user=user)
    admin_orgs = [m.organization_id for m in memberships if m.role == StaffRole.ORGANIZATION_ADMIN]
    ids = set(Practice.objects.filter(organization_id__in=admin_orgs).values_list("id", flat=True))
    ids.update(
        StaffMembership.practices.through.objects.filter(staffmembership__user=user).values_list(
            "practice_id", flat=True
        )
    )
    result = sorted(ids)
    user._careline_practice_ids = result
    return result


def administered_organization_ids(user: AbstractBaseUser | AnonymousUser) -> list[int] | None:
    """Organizations the user is an organization admin of; None means every one (superusers)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if user.is_superuser:
        return None
    cached = getattr(user, "_careline_admin_org_ids", None)
    if cached is None:
        cached = sorted(
            _clinic_model("StaffMembership")
            .objects.filter(user=user, role=StaffRole.ORGANIZATION_ADMIN)
            .values_list("organization_id", flat=True)
        )
        user._careline_admin_org_ids = cached
    return cached


def administered_practice_ids(user: AbstractBaseUser | AnonymousUser) -> list[int] | None:
    """Every practice of the organizations the user administers; None means every practice."""
    org_ids = administered_organization_ids(user)
    if org_ids is None:
        return None
    return sorted(
        _clinic_model("Practice")
        .objects.filter(organization_id__in=org_ids)
        .values_list("id", flat=True)
    )


def users_visible_to(queryset: models.QuerySet, user: AbstractBaseUser | AnonymousUser):
    """Staff logins the user may see: members of the organizations they administer."""
    org_ids = administered_organization_ids(user)
    if org_ids is None:
        return queryset
    return queryset.filter(memberships__organization_id__in=org_ids).distinct()


def grant_practice_scope(user: AbstractBaseUser, practice_ids: list[int]) -> None:
    """Let this user object (only it, not the stored user) see exactly these practices:
    how an API key's service user acts for the key's organization."""
    user._careline_practice_ids = sorted(practice_ids)


def practice_or_organization_wide(practice_ids: list[int]) -> models.Q:
    """Rows of the given practices, plus the organization-wide rows (practice blank) of
    their organizations: a default template, a text not tied to one practice."""
    return models.Q(practice_id__in=practice_ids) | models.Q(
        practice__isnull=True,
        organization_id__in=_clinic_model("Practice")
        .objects.filter(id__in=practice_ids)
        .values("organization_id"),
    )


def scope_q(model: type[models.Model], practice_ids: list[int]) -> models.Q:
    custom = getattr(model, "scope_filter", None)
    if custom is not None:
        return custom(practice_ids)
    lookup = getattr(model, "practice_lookup", None)
    if lookup is None:
        raise TypeError(f"{model.__name__} does not declare how it is scoped to practices")
    return models.Q(**{f"{lookup}__in": practice_ids})


class ScopedQuerySet(models.QuerySet):
    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> ScopedQuerySet:
        return self.within_practices(visible_practice_ids(user))

    def administered_by(self, user: AbstractBaseUser | AnonymousUser) -> ScopedQuerySet:
        """Rows of the organizations the user is organization admin of (the Django admin)."""
        return self.within_practices(administered_practice_ids(user))

    def within_practices(self, practice_ids: list[int] | None) -> ScopedQuerySet:
        if practice_ids is None:
            return self
        if not practice_ids:
            return self.none()
        return self.filter(scope_q(self.model, practice_ids))
