"""The client address behind trusted proxies (config/proxies.py)."""

from __future__ import annotations

from django.test import RequestFactory

from config.proxies import client_address


def request(remote: str = "10.0.0.5", forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


def test_without_trusted_hops_the_client_is_the_peer(settings):
    settings.TRUSTED_PROXY_HOPS = 0
    assert client_address(request(forwarded_for="127.0.0.1, 198.51.100.7")) == "10.0.0.5"


def test_behind_one_proxy_the_client_is_the_entry_it_appended(settings):
    settings.TRUSTED_PROXY_HOPS = 1
    assert client_address(request(forwarded_for="127.0.0.1, 198.51.100.7")) == "198.51.100.7"
    assert client_address(request(forwarded_for=" 198.51.100.7 ")) == "198.51.100.7"
    assert client_address(request()) == "10.0.0.5"


def test_behind_two_proxies_the_outer_ones_entry_counts(settings):
    settings.TRUSTED_PROXY_HOPS = 2
    chain = "127.0.0.1, 198.51.100.7, 10.0.0.9"
    assert client_address(request(forwarded_for=chain)) == "198.51.100.7"
    assert client_address(request(forwarded_for="198.51.100.7")) == "198.51.100.7"


def test_garbage_falls_back_to_the_peer(settings):
    settings.TRUSTED_PROXY_HOPS = 1
    assert client_address(request(forwarded_for="not-an-address")) == "10.0.0.5"
    assert client_address(request(remote="nonsense")) is None
