"""Every staff URL × role × another practice's objects: nothing of practice B leaks to A.

The test walks Django's URL resolver, so a new view is covered the day it is added — and a
view whose URL takes a parameter this file does not know fails loudly until it is listed.
"""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from careline.clinics.models import StaffRole
from careline.scheduling.appointments import book_appointment

# URL namespaces/prefixes that are not the staff app: each has its own door and own tests.
PUBLIC_PREFIXES = (
    "admin/",  # Django admin: org admins only (tests/security/test_admin_matrix.py)
    "fhir/",  # bearer API keys (tests/fhir)
    "webhooks/",  # Twilio signatures (tests/messaging/test_twilio_webhooks.py)
    "simulator/",  # demo patient phones (tests/security/test_simulator_matrix.py)
    "api/",  # bearer API keys
    "selfservice/",  # patient pages (language switch); signed links tested in tests/selfservice
)
PUBLIC_NAMES = {"login", "logout", "healthz"}
DAY = date(2026, 12, 2)


def _walk(patterns, prefix="", namespace=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), (namespace + p.name) if p.name else None, p


def staff_urls():
    found = []
    for route, name, pattern in _walk(get_resolver().url_patterns):
        if route.startswith(PUBLIC_PREFIXES) or name in PUBLIC_NAMES:
            continue
        module = pattern.callback.__module__
        if module.startswith("careline.selfservice"):
            continue  # patient pages: signed tokens, tested in tests/selfservice
        found.append((route, name, pattern))
    return found


@pytest.fixture
def two_practices(build):
    org = build.organization()
    a = build.practice(org, name="Practice A")
    b = build.practice(org, name="Practice B")
    kind = build.appointment_type(org)
    objects = {}
    for key, practice in (("a", a), ("b", b)):
        provider = build.provider(practice)
        patient = build.patient(org, home_practice=practice)
        appt = book_appointment(
            patient=patient,
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=datetime.combine(DAY, time(9), tzinfo=practice.zone),
        )
        objects[key] = {
            "practice": practice,
            "patient": patient,
            "appointment": appt,
            "provider": provider,
        }
    for key in ("a", "b"):
        objects[key].update(_optional_objects(org, objects[key]))
    return org, objects


def _optional_objects(org, objs) -> dict:
    """Objects of apps that exist in this build; each is one more row of the matrix."""
    extra = {}
    try:
        from careline.broadcasts.sending import Audience, send_broadcast

        extra["broadcast"] = send_broadcast(
            organization_id=org.id,
            audience=Audience(practice_ids=(objs["practice"].id,)),
            name="b",
            body_en="Hello {first_name}",
        )
    except ImportError:
        pass
    try:
        from django.utils import timezone

        from careline.broadcasts.models import BroadcastPreview

        extra["preview"] = BroadcastPreview.objects.create(
            organization=org,
            audience={"practice_ids": [objs["practice"].id]},
            key="k",
            requested_at=timezone.now(),
        )
    except ImportError:
        pass
    try:
        from django.utils import timezone

        from careline.conversations.models import Conversation

        now = timezone.now()
        extra["conversation"] = Conversation.objects.create(
            organization=org,
            practice=objs["practice"],
            patient=objs["patient"],
            phone=objs["patient"].mobile_phone,
            created_at=now,
            last_patient_message_at=now,
        )
    except ImportError:
        pass
    try:
        from careline.conversations.models import CannedReply

        extra["canned_reply"] = CannedReply.objects.create(
            organization=org, practice=objs["practice"], title="t", body="b"
        )
    except ImportError:
        pass
    try:
        from careline.messaging.models import MessageTemplate

        extra["template"] = MessageTemplate.objects.create(
            organization=org,
            practice=objs["practice"],
            kind="reminder",
            language="en",
            body="Hi {first_name}",
        )
    except ImportError:
        pass
    try:
        from django.utils import timezone

        from careline.messaging.models import Experiment

        extra["experiment"] = Experiment.objects.create(
            organization=org,
            practice=objs["practice"],
            name="x",
            share_basis_points=1000,
            started_at=timezone.now(),
        )
    except ImportError:
        pass
    extra["organization"] = org
    return extra


def kwargs_for(pattern, objs) -> dict:
    values = {
        "practice_id": objs["practice"].id,
        "appointment_id": objs["appointment"].id,
        "patient_id": objs["patient"].id,
        "provider_id": objs["provider"].id,
        "day": DAY.isoformat(),
    }
    for name in (
        "broadcast",
        "preview",
        "conversation",
        "template",
        "organization",
        "experiment",
        "canned_reply",
    ):
        if name in objs:
            values[f"{name}_id"] = objs[name].id
    needed = list(pattern.pattern.converters) or []
    missing = [k for k in needed if k not in values]
    assert not missing, (
        f"{pattern.pattern} takes {missing}: teach tests/security/test_authorization_matrix.py "
        "which object of another practice to try"
    )
    return {k: values[k] for k in needed}


def _path(route_pattern, name, pattern, objs):
    from django.urls import reverse

    return reverse(name, kwargs=kwargs_for(pattern, objs))


@pytest.mark.parametrize("role", [StaffRole.FRONT_DESK, StaffRole.PRACTICE_MANAGER])
def test_staff_of_a_get_nothing_of_b(client, build, two_practices, role):
    org, objects = two_practices
    user = build.staff(org, role, practices=[objects["a"]["practice"]])
    client.force_login(user)
    checked = 0
    for route, name, pattern in staff_urls():
        assert name, f"URL {route} has no name; name it so it can be checked"
        if not pattern.pattern.converters:
            continue  # lists: scoped querysets, checked by content in each app's tests
        other_url = _path(route, name, pattern, objects["b"])
        for method in ("get", "post"):
            response = getattr(client, method)(other_url)
            assert response.status_code in (403, 404, 405), (
                f"{role} of A: {method.upper()} {other_url} ({name}) gave {response.status_code}"
            )
            body = response.content.decode(errors="replace")
            assert (
                objects["b"]["patient"].family_name + " " not in body or response.status_code == 405
            )
        own_url = _path(route, name, pattern, objects["a"])
        own = client.get(own_url)
        assert own.status_code in (200, 302, 403, 405), (
            f"own object {own_url} gave {own.status_code}"
        )
        checked += 1
    assert checked >= 4  # day view, call list, appointment status, patient page at least


def test_anonymous_visitors_are_sent_to_sign_in(client, two_practices):
    org, objects = two_practices
    for route, name, pattern in staff_urls():
        url = _path(route, name, pattern, objects["a"])
        response = client.get(url)
        assert response.status_code in (302, 405), f"GET {url} ({name}) gave {response.status_code}"
        if response.status_code == 302:
            assert response["Location"].startswith("/login/"), url
        post = client.post(url)
        assert post.status_code in (302, 403, 405), f"POST {url} gave {post.status_code}"


def test_csrf_is_required_on_every_staff_form(build, two_practices):
    from django.test import Client

    org, objects = two_practices
    user = build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[objects["a"]["practice"]])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    for route, name, pattern in staff_urls():
        url = _path(route, name, pattern, objects["a"])
        response = strict.post(url, {})
        assert response.status_code in (403, 405), (
            f"POST {url} without CSRF gave {response.status_code}"
        )
