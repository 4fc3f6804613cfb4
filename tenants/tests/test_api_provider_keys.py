"""/api/v1/provider-keys/: a tenant's own stream-mode keys, written and never read back."""

from __future__ import annotations

import pytest

from tenants.models import Tenant

pytestmark = pytest.mark.django_db

URL = "/api/v1/provider-keys/"
DEEPGRAM = "dg_0123456789abcdef0123456789abcdef"
ASSEMBLYAI = "aai_0123456789abcdef0123456789abcdef"


def stored(tenant: Tenant) -> Tenant:
    return Tenant.objects.get(pk=tenant.pk)


def test_the_owner_sets_both_keys_and_never_reads_them_back(api, alice, tenant_a) -> None:
    client = api(alice)
    assert client.get(URL).json() == {
        "deepgram_api_key_set": False,
        "assemblyai_api_key_set": False,
    }
    response = client.patch(
        URL, {"deepgram_api_key": DEEPGRAM, "assemblyai_api_key": ASSEMBLYAI}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"deepgram_api_key_set": True, "assemblyai_api_key_set": True}
    for body in (response.content, client.get(URL).content):
        assert DEEPGRAM.encode() not in body and ASSEMBLYAI.encode() not in body
    tenant = stored(tenant_a)
    assert tenant.get_deepgram_api_key() == DEEPGRAM
    assert tenant.get_assemblyai_api_key() == ASSEMBLYAI
    assert ASSEMBLYAI not in tenant.assemblyai_api_key_encrypted


def test_a_key_left_out_stays_and_an_empty_one_is_removed(api, alice, tenant_a) -> None:
    tenant_a.set_deepgram_api_key(DEEPGRAM)
    tenant_a.set_assemblyai_api_key(ASSEMBLYAI)
    tenant_a.save()
    response = api(alice).patch(URL, {"assemblyai_api_key": ""}, format="json")
    assert response.json() == {"deepgram_api_key_set": True, "assemblyai_api_key_set": False}
    tenant = stored(tenant_a)
    assert tenant.get_deepgram_api_key() == DEEPGRAM
    assert not tenant.has_assemblyai_api_key


def test_a_viewer_cannot_set_a_key(api, bob, tenant_a) -> None:
    response = api(bob).patch(URL, {"assemblyai_api_key": ASSEMBLYAI}, format="json")
    assert response.status_code == 403
    assert not stored(tenant_a).has_assemblyai_api_key


def test_another_tenant_cannot_set_or_see_the_keys(api, charlie, tenant_a, tenant_b) -> None:
    client = api(charlie)
    named_a = {"HTTP_X_TENANT": tenant_a.slug}
    assert client.get(URL, **named_a).status_code == 404
    response = client.patch(URL, {"assemblyai_api_key": ASSEMBLYAI}, format="json", **named_a)
    assert response.status_code == 404
    assert not stored(tenant_a).has_assemblyai_api_key
    # Its own keys are its own tenant's.
    client.patch(URL, {"assemblyai_api_key": ASSEMBLYAI}, format="json")
    assert stored(tenant_b).get_assemblyai_api_key() == ASSEMBLYAI
    assert not stored(tenant_a).has_assemblyai_api_key


def test_a_key_too_long_gets_400(api, alice, tenant_a) -> None:
    response = api(alice).patch(URL, {"assemblyai_api_key": "x" * 501}, format="json")
    assert response.status_code == 400
    assert "assemblyai_api_key" in response.json()
