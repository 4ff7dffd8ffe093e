"""Sign-in throttling: a few mistakes are fine, a guessing run is not."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from careline.clinics.usernames import normalize_username
from careline.web.models import FailedLogin

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_ADDRESS = 20


def sign_in_blocked(username: str, ip_address: str | None) -> bool:
    since = timezone.now() - WINDOW
    recent = FailedLogin.objects.filter(occurred_at__gte=since)
    by_name = recent.filter(username=normalize_username(username)).count()
    by_address = recent.filter(ip_address=ip_address).count() if ip_address else 0
    return by_name >= MAX_FAILURES_PER_USERNAME or by_address >= MAX_FAILURES_PER_ADDRESS


def record_failed_sign_in(username: str, ip_address: str | None) -> None:
    FailedLogin.objects.create(username=normalize_username(username)[:150], ip_address=ip_address)
    # Keep the table small: nothing older than the window matters.
    FailedLogin.objects.filter(Q(occurred_at__lt=timezone.now() - WINDOW)).delete()


def clear_failures(username: str) -> None:
    FailedLogin.objects.filter(username=normalize_username(username)).delete()
