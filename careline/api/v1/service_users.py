"""The staff identity an API key acts as in the inbox.

Inbox actions (careline.conversations.inbox) record who answered and assign an unassigned
conversation to them, so an API reply needs a user. Each key gets its own service user,
`api-<key name>-<prefix>`, so the inbox shows which integration answered, and revoking the
key ends its access while its past replies keep their author.

The service user has no password and no staff membership: signing in as it is impossible,
it is never offered as an assignee, and on its own it can see nothing. What it may see is
granted per request, from the key: the practices of the key's organization, exactly what
an organization admin sees. A superuser who deactivates it stops the key's inbox replies
and broadcasts (403) while leaving its read access alone.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.utils.text import slugify

from careline.clinics.models import Practice
from careline.clinics.scoping import grant_practice_scope
from careline.integrations.models import ApiKey

USERNAME_MAX = 150


def service_username(api_key: ApiKey) -> str:
    name = slugify(api_key.name)[: USERNAME_MAX - 20]
    return f"api-{name}-{api_key.prefix}" if name else f"api-{api_key.prefix}"


def acting_user(api_key: ApiKey) -> AbstractBaseUser:
    """The key's service user (made on first use), scoped to the key's organization for the
    length of this request."""
    user, created = get_user_model().objects.get_or_create(
        username=service_username(api_key),
        defaults={"first_name": api_key.name[:150], "is_staff": False, "is_active": True},
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if not user.is_active:
        raise PermissionDenied(
            f"The service user {user.get_username()} of this API key is deactivated; "
            "it may not act in the inbox or send broadcasts."
        )
    grant_practice_scope(
        user,
        list(
            Practice.objects.filter(organization_id=api_key.organization_id).values_list(
                "id", flat=True
            )
        ),
    )
    return user
