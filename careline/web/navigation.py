"""What the staff pages' top bar offers the signed-in user."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from careline.clinics.admin_scoping import is_organization_admin


def navigation(request: HttpRequest) -> dict:
    # Lazy: pages without the top bar (patient pages, webhooks) never ask for roles.
    return {"may_use_admin": SimpleLazyObject(lambda: is_organization_admin(request))}
