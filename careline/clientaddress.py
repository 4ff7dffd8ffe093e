"""The address of the person at the other end, for rate limits and the audit trail.

Behind a reverse proxy every request's ``REMOTE_ADDR`` is the proxy's, so keying a limit on
it lets one client lock out everyone. ``CARELINE_TRUSTED_PROXY_COUNT`` says how many proxies
of our own stand in front of Careline; each appends the address it received from to
``X-Forwarded-For``, so the client is the Nth address from the right. Anything further left
was written by the client and is ignored. With 0 (the default) the header is not trusted.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return ""


def client_address(request: HttpRequest) -> str:
    """The client's IP address ("" when unknown)."""
    remote = _valid(request.META.get("REMOTE_ADDR", "") or "")
    count = int(getattr(settings, "CARELINE_TRUSTED_PROXY_COUNT", 0) or 0)
    if count <= 0:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if len(forwarded) < count:
        # Not through all of our proxies (or a misconfigured one): trust only the socket.
        return remote
    return _valid(forwarded[-count]) or remote
