"""Logins: password guessing is throttled on every login form, and a login lands on a page."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from conftest import PASSWORD

pytestmark = pytest.mark.django_db

# The admin's login, the dashboard's, and the console's (it sends people to the admin's).
LOGINS = [
    "/admin/login/?next=/admin/",
    "/dashboard/login/",
    "/admin/login/?next=/console/api-keys/",
]


def failure_limit() -> int:
    return getattr(settings, "AXES_FAILURE_LIMIT", 5)


def guess(client: Client, url: str, username: str, password: str, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", LOGINS)
def test_guessing_a_password_locks_the_login(url, alice):
    client = Client()
    for _ in range(failure_limit() - 1):
        assert guess(client, url, "alice", "guess").status_code == 200
    assert guess(client, url, "alice", "guess").status_code == 429  # the last one allowed
    response = guess(client, url, "alice", PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    # The failures are kept for the cool-off, without the passwords tried.
    from axes.models import AccessAttempt

    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.failures_since_start >= failure_limit()
    assert "guess" not in attempt.post_data


def test_guessing_from_many_addresses_still_locks_the_account(alice):
    client = Client()
    for n in range(failure_limit()):
        guess(client, "/dashboard/login/", "alice", "guess", REMOTE_ADDR=f"198.51.100.{n + 1}")
    response = guess(client, "/dashboard/login/", "alice", PASSWORD, REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 429
    assert not logged_in(client)


def test_a_forged_forwarded_for_does_not_reset_the_count(alice, bob, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    client = Client()
    # One address behind the proxy tries several accounts, writing a new address each time.
    for n in range(failure_limit()):
        forged = f"203.0.113.{n + 1}, 198.51.100.7"
        guess(client, "/dashboard/login/", f"user{n}", "guess", HTTP_X_FORWARDED_FOR=forged)
    response = guess(
        client,
        "/dashboard/login/",
        "bob",
        PASSWORD,
        HTTP_X_FORWARDED_FOR="203.0.113.99, 198.51.100.7",
    )
    assert response.status_code == 429
    # Another client behind the same proxy is not locked out by it.
    other = Client()
    response = guess(
        other, "/dashboard/login/", "bob", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.8"
    )
    assert response.status_code == 302
    assert logged_in(other)


def test_a_success_before_the_limit_clears_the_failures(alice):
    client = Client()
    for _ in range(failure_limit() - 1):
        guess(client, "/dashboard/login/", "alice", "guess")
    assert guess(client, "/dashboard/login/", "alice", PASSWORD).status_code == 302
    client.logout()
    for _ in range(failure_limit() - 1):
        guess(client, "/dashboard/login/", "alice", "guess")
    assert guess(client, "/dashboard/login/", "alice", PASSWORD).status_code == 302


def test_the_admin_login_without_next_lands_on_a_real_page(alice):
    client = Client()
    response = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200
