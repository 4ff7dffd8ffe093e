"""Staff see times in their practice's time zone, not the server's UTC."""

from __future__ import annotations

import zoneinfo

from django.http import HttpRequest
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from careline.clinics.models import Practice

SESSION_KEY = "careline_time_zone"


class PracticeTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        zone = self._zone(request)
        if zone:
            timezone.activate(zoneinfo.ZoneInfo(zone))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    @staticmethod
    def _zone(request: HttpRequest) -> str:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return ""
        zone = request.session.get(SESSION_KEY)
        if zone is None:
            # The first of the user's practices: staff of a multi-zone organization see
            # their home practice's clock; pages about one practice use its own zone.
            first = Practice.objects.visible_to(user).order_by("id").first()
            zone = first.time_zone if first else ""
            request.session[SESSION_KEY] = zone
        return zone


# Pages for patients themselves (signed links, online booking) show health information too.
SELF_SERVICE_APP = "selfservice"


class NoStoreMiddleware:
    """Nothing a signed-in staff member or a patient's self-service page sees is cached.

    Browsers, shared computers at the front desk and proxies must not keep copies of pages
    with patient information: such responses get ``Cache-Control: no-store`` (with Django's
    never-cache headers). Anonymous public pages (sign-in, health check) are left alone.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        match = getattr(request, "resolver_match", None)
        staff = user is not None and user.is_authenticated
        self_service = match is not None and match.app_name == SELF_SERVICE_APP
        if staff or self_service:
            add_never_cache_headers(response)
        return response
