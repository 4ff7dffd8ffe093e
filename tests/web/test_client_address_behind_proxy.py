"""Behind a reverse proxy, rate limits count the client, not the proxy."""

from pathlib import Path

import pytest
from django.test import RequestFactory, override_settings
from django.urls import reverse

import careline
from careline.clientaddress import client_address


def _request(remote="10.0.0.1", forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_address(_request(forwarded="203.0.113.5")) == "10.0.0.1"


@override_settings(CARELINE_TRUSTED_PROXY_COUNT=1)
def test_one_proxy_means_the_rightmost_forwarded_address():
    assert client_address(_request(forwarded="1.2.3.4, 203.0.113.5")) == "203.0.113.5"


@override_settings(CARELINE_TRUSTED_PROXY_COUNT=2)
def test_two_proxies_means_the_second_from_the_right():
    request = _request(forwarded="6.6.6.6, 203.0.113.5, 10.0.0.9")
    assert client_address(request) == "203.0.113.5"


@override_settings(CARELINE_TRUSTED_PROXY_COUNT=2)
def test_too_short_or_garbage_header_falls_back_to_the_socket():
    assert client_address(_request(forwarded="203.0.113.5")) == "10.0.0.1"
    assert client_address(_request()) == "10.0.0.1"
    assert client_address(_request(forwarded="not-an-ip, 10.0.0.9")) == "10.0.0.1"


@pytest.mark.django_db
@override_settings(CARELINE_TRUSTED_PROXY_COUNT=1)
def test_one_guessing_client_behind_the_proxy_does_not_lock_out_another(client):
    url = reverse("login")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for i in range(20):
        client.post(
            url,
            {"username": f"guess{i}", "password": "x"},
            HTTP_X_FORWARDED_FOR="203.0.113.9",
            **proxy,
        )
    blocked = client.post(
        url, {"username": "someone", "password": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy
    )
    assert blocked.status_code == 429
    other = client.post(
        url, {"username": "someone", "password": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy
    )
    assert other.status_code == 200


def test_every_door_reads_the_address_through_client_address():
    root = Path(careline.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "clientaddress.py" and "REMOTE_ADDR" in path.read_text()
    ]
    assert offenders == []
