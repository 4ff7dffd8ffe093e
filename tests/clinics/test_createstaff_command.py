"""`careline createstaff` refuses weak passwords with the validators' reasons."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


def test_a_one_character_password_is_refused_with_reasons(build):
    org = build.organization()
    practice = build.practice(org)
    with pytest.raises(CommandError) as refused:
        call_command(
            "createstaff", "weak", password="1", organization=org.slug, practice=[practice.code]
        )
    assert "too short" in str(refused.value)
    assert not get_user_model().objects.filter(username="weak").exists()


def test_a_common_password_is_refused(build):
    org = build.organization()
    practice = build.practice(org)
    with pytest.raises(CommandError, match="too common"):
        call_command(
            "createstaff",
            "c",
            password="password123",
            organization=org.slug,
            practice=[practice.code],
        )


def test_a_strong_password_creates_the_login(build):
    org = build.organization()
    practice = build.practice(org)
    call_command(
        "createstaff",
        "desk",
        password="plum-harbor-lantern-7",
        organization=org.slug,
        practice=[practice.code],
    )
    user = get_user_model().objects.get(username="desk")
    assert user.is_staff and user.check_password("plum-harbor-lantern-7")


def test_the_username_is_stored_folded(build):
    org = build.organization()
    practice = build.practice(org)
    call_command(
        "createstaff",
        "ＤＥＳＫ",
        password="plum-harbor-lantern-7",
        organization=org.slug,
        practice=[practice.code],
    )
    assert get_user_model().objects.filter(username="desk").exists()


def test_a_lookalike_of_an_existing_login_is_refused(build):
    org = build.organization()
    practice = build.practice(org)
    get_user_model().objects.create_user("Desk", password="x")
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "createstaff",
            "ｄｅｓｋ",
            password="plum-harbor-lantern-7",
            organization=org.slug,
            practice=[practice.code],
        )
