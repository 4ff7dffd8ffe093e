"""Pages with patient information are never cached; a sign-in lasts one practice day."""

from django.conf import settings
from django.urls import reverse


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_a_staff_session_lasts_twelve_hours_by_default():
    assert settings.SESSION_COOKIE_AGE == 12 * 3600


def test_signed_in_staff_pages_are_not_stored(client, build):
    practice = build.practice()
    client.force_login(build.staff(practice.organization, practices=[practice]))
    # The front desk's home is today's day view: `/` redirects there.
    response = client.get(reverse("home"), follow=True)
    assert response.status_code == 200 and response.redirect_chain
    assert _no_store(response)


def test_self_service_pages_are_not_stored(client, build):
    practice = build.practice()
    response = client.get(
        reverse("selfservice:book", args=[practice.organization.slug, practice.code])
    )
    assert response.status_code == 200
    assert _no_store(response)


def test_anonymous_public_pages_keep_their_headers(client, db):
    assert not _no_store(client.get(reverse("healthz")))
