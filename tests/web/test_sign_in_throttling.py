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
