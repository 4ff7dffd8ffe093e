"""Issue 20: the inbox search finds a conversation by the patient's name, a phone number
written any way, or a fragment of any text sent or received, in English and Spanish,
through the indexes of migration 0007 (pg_trgm on PostgreSQL, FTS5 trigram tables on
SQLite), and never across organizations. Not timed: bench/inbox_search.py times it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.conversations.models import InboundMessage

from .conftest import post_sms

OTHER_ORG_NUMBER = "+15125550300"


def _text_to(client, number: str, phone: str, body: str) -> InboundMessage:
    return post_sms(client, number, phone, body)


@pytest.fixture
def inbox(build, twoway):
    """Oak Clinic's threads, and the same names, numbers and words at another organization."""
    maria = twoway.patient(
        phone="+17375550123", given_name="María José", family_name="Núñez",
        preferred_language="es",
    )  # fmt: skip
    john = twoway.patient(phone="+15125550777", given_name="John", family_name="Alvarez")
    asks = "¿Dónde me estaciono? Llego tarde a mi CITA del martes"
    threads = {
        "maria": twoway.text(maria.mobile_phone, asks).conversation,
        "john": twoway.text(john.mobile_phone, "Can I get a refill of my Lisinopril?").conversation,
    }
    far_org = build.organization(name="Far Away Health", default_sender_number=OTHER_ORG_NUMBER)
    far_practice = build.practice(far_org, name="Far Clinic")
    far_maria = build.patient(
        far_org, home_practice=far_practice, given_name="María José", family_name="Núñez",
        mobile_phone="+17375550124",
    )  # fmt: skip
    threads["far"] = _text_to(
        twoway.client, OTHER_ORG_NUMBER, far_maria.mobile_phone,
        "¿Dónde me estaciono? Llego tarde a mi CITA del martes. Refill of my Lisinopril?",
    ).conversation  # fmt: skip
    desk = build.staff(twoway.org, StaffRole.FRONT_DESK, practices=[twoway.practice])
    admin = build.staff(twoway.org, StaffRole.ORGANIZATION_ADMIN, username="oak-admin")
    far_admin = build.staff(far_org, StaffRole.ORGANIZATION_ADMIN, username="far-admin")
    clients = {}
    for name, user in (("desk", desk), ("admin", admin), ("far", far_admin)):
        clients[name] = Client()
        clients[name].force_login(user)
    return threads, clients


def _found(client, q: str) -> set[int]:
    page = client.get(reverse("conversations:inbox"), {"q": q})
    assert page.status_code == 200, page.content
    return {c.id for c in page.context["conversations"]}


@pytest.mark.parametrize(
    "q", ["maría", "MARÍA JOSÉ", "Núñez", "núñ", "María Núñez", "josé núñez", "ría jo"]
)
def test_finds_by_name_in_any_case_with_accents(inbox, q):
    threads, clients = inbox
    assert _found(clients["desk"], q) == {threads["maria"].id}
    assert _found(clients["far"], q) == {threads["far"].id}


@pytest.mark.parametrize("q", ["Alvarez", "alv", "John Alvarez", "jo"])
def test_finds_by_name_short_or_long(inbox, q):
    threads, clients = inbox
    assert threads["john"].id in _found(clients["desk"], q)
    assert threads["far"].id not in _found(clients["desk"], q)


@pytest.mark.parametrize(
    "q", ["(737) 555-0123", "737.555.0123", "+1 737 555 0123", "7375550123", "0123", "555-0123"]
)
def test_finds_by_phone_written_any_way(inbox, q):
    threads, clients = inbox
    assert _found(clients["admin"], q) == {threads["maria"].id}
    assert _found(clients["far"], q) == set()


@pytest.mark.parametrize(
    "q,who",
    [
        ("lisinopril", "john"),
        ("REFILL OF MY", "john"),
        ("fill of my lisin", "john"),
        ("estaciono", "maria"),
        ("¿dónde me", "maria"),
        ("cita del martes", "maria"),
        ("DÓNDE", "maria"),
        ("tarde a mi", "maria"),
    ],
)
def test_finds_by_a_fragment_of_a_text_in_english_or_spanish(inbox, q, who):
    threads, clients = inbox
    assert _found(clients["desk"], q) == {threads[who].id}
    assert _found(clients["admin"], q) == {threads[who].id}
    # The same words at another organization are its own.
    assert _found(clients["far"], q) == {threads["far"].id}


def test_finds_a_staff_reply_and_a_later_text(inbox, twoway):
    threads, clients = inbox
    desk = clients["desk"]
    desk.post(
        reverse("conversations:reply", args=[threads["john"].id]),
        {"body": "Sí, use el garaje azul junto a la farmacia."},
    )
    assert _found(desk, "garaje azul") == {threads["john"].id}
    assert _found(desk, "FARMACIA") == {threads["john"].id}
    assert _found(clients["far"], "garaje azul") == set()
    twoway.text("+17375550123", "Gracias, ya encontré estacionamiento")
    assert _found(desk, "ya encontré") == {threads["maria"].id}


@pytest.mark.parametrize(
    "q",
    ['"', '""', "lisinopril\"", "NEAR(a b)", "a AND b", "refill*", "col:refill", "^can", "%", "_",
     "'); DROP TABLE x; --", "-", "()", "a OR b"],
)  # fmt: skip
def test_search_syntax_of_any_kind_is_just_text(inbox, q):
    threads, clients = inbox
    assert _found(clients["desk"], q) <= {threads["maria"].id, threads["john"].id}


def test_percent_and_underscore_are_not_wildcards(inbox):
    _, clients = inbox
    assert _found(clients["desk"], "l%l") == set()
    assert _found(clients["desk"], "Lisin_pril") == set()
