"""Fixtures for the REST API tests: clients for the three actors and API keys."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django_scopes import scopes_disabled
from rest_framework.test import APIClient

from tenants.models import Role
from tenants.services import api_key_create


@pytest.fixture
def api():
    """A client that logs in as the given user (or none) and speaks JSON.

    Throttle counters live in the cache (Redis in services mode): every test starts at zero.
    """
    cache.clear()

    def make(user=None, *, key: str | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_login(user)
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def key_a(tenant_a, alice) -> str:
    """A read-and-write API key of tenant A (the full key)."""
    with scopes_disabled():
        return api_key_create(tenant=tenant_a, name="CRM sync", created_by=alice)[1]


@pytest.fixture
def readonly_key_a(tenant_a, alice) -> str:
    with scopes_disabled():
        return api_key_create(tenant=tenant_a, name="Reports", role=Role.VIEWER, created_by=alice)[
            1
        ]


@pytest.fixture
def key_b(tenant_b) -> str:
    with scopes_disabled():
        return api_key_create(tenant=tenant_b, name="Bravo sync")[1]
