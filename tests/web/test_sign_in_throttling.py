"""Password guessing is slowed down; a person who mistypes twice is not locked out."""

from django.urls import reverse

from careline.web.models import FailedLogin


def test_five_failures_block_the_username_even_with_the_right_password(client, build):
    org = build.organization()
    build.staff(org, username="desk", password="right-password-1")
    url = reverse("login")
    for _ in range(5):
        response = client.post(url, {"username": "desk", "password": "wrong"})
        assert response.status_code == 200
    assert FailedLogin.objects.filter(username="desk").count() == 5
    blocked = client.post(url, {"username": "desk", "password": "right-password-1"})
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.content.decode()
    assert "_auth_user_id" not in client.session


def test_success_after_a_few_mistakes_clears_them(client, build):
    org = build.organization()
    build.staff(org, username="desk2", password="right-password-2")
    url = reverse("login")
    for _ in range(2):
        client.post(url, {"username": "desk2", "password": "nope"})
    response = client.post(url, {"username": "desk2", "password": "right-password-2"})
    assert response.status_code == 302
    assert not FailedLogin.objects.filter(username="desk2").exists()


def test_many_usernames_from_one_address_are_blocked(client, build):
    url = reverse("login")
    for i in range(20):
        client.post(url, {"username": f"guess{i}", "password": "x"}, REMOTE_ADDR="203.0.113.9")
    response = client.post(url, {"username": "someone", "password": "x"}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 429


def test_fullwidth_or_uppercase_spellings_count_against_the_same_username(client, build):
    org = build.organization()
    build.staff(org, username="desk5", password="right-password-5")
    url = reverse("login")
    for spelling in ["desk5", "ＤＥＳＫ５", "ｄｅｓｋ5", "DESK5", "Desk５"]:
        client.post(url, {"username": spelling, "password": "wrong"})
    assert FailedLogin.objects.filter(username="desk5").count() == 5
    for spelling in ["desk5", "ｄｅｓｋ５"]:
        blocked = client.post(url, {"username": spelling, "password": "right-password-5"})
        assert blocked.status_code == 429
    assert "_auth_user_id" not in client.session
