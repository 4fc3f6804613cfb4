"""The tenant's keys for stream mode's providers (Deepgram, AssemblyAI): write-only, encrypted,
its tenant's own."""

from __future__ import annotations

import pytest

from tenants.models import Tenant
from tenants.tests.test_admin_tenant import change_url, client_for, stored, tenant_form

pytestmark = pytest.mark.django_db

KEYS = {
    "deepgram": "dg_0123456789abcdef0123456789abcdef",
    "assemblyai": "aai_0123456789abcdef0123456789abcdef",
}
PROVIDERS = pytest.mark.parametrize("provider", sorted(KEYS))


def key_of(tenant: Tenant, provider: str) -> str:
    return getattr(tenant, f"get_{provider}_api_key")()


def encrypted(tenant: Tenant, provider: str) -> str:
    return getattr(tenant, f"{provider}_api_key_encrypted")


@PROVIDERS
def test_the_owner_sets_the_key_and_it_is_stored_encrypted(alice, tenant_a, provider) -> None:
    key = KEYS[provider]
    response = client_for(alice).post(
        change_url(tenant_a), tenant_form(tenant_a, **{f"{provider}_api_key": key})
    )
    assert response.status_code == 302
    tenant = stored(tenant_a)
    assert key not in encrypted(tenant, provider)
    assert key_of(tenant, provider) == key
    other = next(p for p in KEYS if p != provider)
    assert key_of(tenant, other) == ""  # each key is its own


@PROVIDERS
def test_the_key_is_never_shown_and_an_empty_field_keeps_it(alice, tenant_a, provider) -> None:
    key = KEYS[provider]
    getattr(tenant_a, f"set_{provider}_api_key")(key)
    tenant_a.save()
    client = client_for(alice)
    page = client.get(change_url(tenant_a)).content.decode()
    assert key not in page and encrypted(tenant_a, provider)[:20] not in page

    client.post(change_url(tenant_a), tenant_form(tenant_a))
    assert key_of(stored(tenant_a), provider) == key

    client.post(change_url(tenant_a), tenant_form(tenant_a, **{f"clear_{provider}_api_key": "on"}))
    assert key_of(stored(tenant_a), provider) == ""


@PROVIDERS
def test_another_tenants_admin_cannot_set_the_key(charlie, tenant_a, provider) -> None:
    response = client_for(charlie).post(
        change_url(tenant_a), tenant_form(tenant_a, **{f"{provider}_api_key": KEYS[provider]})
    )
    assert response.status_code == 404
    assert key_of(stored(tenant_a), provider) == ""
