"""The tenant's AssemblyAI key (stream mode's recognition): write-only, encrypted, its own."""

from __future__ import annotations

import pytest

from tenants.models import Tenant
from tenants.tests.test_admin_tenant import change_url, client_for, stored, tenant_form

pytestmark = pytest.mark.django_db

KEY = "aai_0123456789abcdef0123456789abcdef"


def test_the_owner_sets_the_key_and_it_is_stored_encrypted(alice, tenant_a: Tenant) -> None:
    response = client_for(alice).post(
        change_url(tenant_a), tenant_form(tenant_a, assemblyai_api_key=KEY)
    )
    assert response.status_code == 302
    tenant = stored(tenant_a)
    assert KEY not in tenant.assemblyai_api_key_encrypted
    assert tenant.get_assemblyai_api_key() == KEY
    assert not tenant.has_deepgram_api_key


def test_the_key_is_never_shown_and_an_empty_field_keeps_it(alice, tenant_a: Tenant) -> None:
    tenant_a.set_assemblyai_api_key(KEY)
    tenant_a.save()
    client = client_for(alice)
    page = client.get(change_url(tenant_a)).content.decode()
    assert KEY not in page and tenant_a.assemblyai_api_key_encrypted[:20] not in page

    client.post(change_url(tenant_a), tenant_form(tenant_a))
    assert stored(tenant_a).get_assemblyai_api_key() == KEY

    client.post(change_url(tenant_a), tenant_form(tenant_a, clear_assemblyai_api_key="on"))
    assert not stored(tenant_a).has_assemblyai_api_key


def test_another_tenants_admin_cannot_set_the_key(charlie, tenant_a: Tenant) -> None:
    response = client_for(charlie).post(
        change_url(tenant_a), tenant_form(tenant_a, assemblyai_api_key=KEY)
    )
    assert response.status_code == 404
    assert not stored(tenant_a).has_assemblyai_api_key
