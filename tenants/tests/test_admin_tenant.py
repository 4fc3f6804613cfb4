"""The Tenant admin: who may edit a tenant, and the write-only Twilio auth token."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tenants.models import Tenant

pytestmark = pytest.mark.django_db

TOKEN = "f3a1c0ffee0ddba11f3a1c0ffee0ddba"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change_url(tenant: Tenant) -> str:
    return reverse("admin:tenants_tenant_change", args=[tenant.pk])


def tenant_form(tenant: Tenant, **overrides: str) -> dict[str, str]:
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "timezone": tenant.timezone,
        "twilio_account_sid": tenant.twilio_account_sid,
        "twilio_auth_token": "",
    }
    if tenant.active:
        data["active"] = "on"
    data.update(overrides)
    return data


def stored(tenant: Tenant) -> Tenant:
    return Tenant.objects.get(pk=tenant.pk)


@pytest.fixture
def tenant_with_token(tenant_a: Tenant) -> Tenant:
    tenant_a.twilio_account_sid = "AC" + "a" * 32
    tenant_a.set_twilio_auth_token(TOKEN)
    tenant_a.save()
    return tenant_a


def test_a_token_saved_through_the_admin_is_stored_encrypted(superuser, tenant_a: Tenant) -> None:
    response = client_for(superuser).post(
        change_url(tenant_a), tenant_form(tenant_a, twilio_auth_token=TOKEN)
    )
    assert response.status_code == 302
    tenant = stored(tenant_a)
    assert tenant.twilio_auth_token_encrypted
    assert TOKEN not in tenant.twilio_auth_token_encrypted
    assert tenant.get_twilio_auth_token() == TOKEN


def test_a_token_given_when_adding_a_tenant_is_stored_encrypted(superuser) -> None:
    data = {
        "name": "Charlie's Cafe",
        "slug": "cafe",
        "timezone": "UTC",
        "active": "on",
        "twilio_account_sid": "AC" + "c" * 32,
        "twilio_auth_token": TOKEN,
    }
    response = client_for(superuser).post(reverse("admin:tenants_tenant_add"), data)
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="cafe")
    assert TOKEN not in tenant.twilio_auth_token_encrypted
    assert tenant.get_twilio_auth_token() == TOKEN


def test_the_owner_can_set_the_token_of_their_tenant(alice, tenant_a: Tenant) -> None:
    response = client_for(alice).post(
        change_url(tenant_a), tenant_form(tenant_a, twilio_auth_token=TOKEN)
    )
    assert response.status_code == 302
    assert stored(tenant_a).get_twilio_auth_token() == TOKEN


@pytest.mark.parametrize("actor", ["superuser", "alice"])
def test_the_admin_pages_never_show_the_token_nor_its_ciphertext(
    actor: str, request: pytest.FixtureRequest, tenant_with_token: Tenant
) -> None:
    client = client_for(request.getfixturevalue(actor))
    ciphertext = tenant_with_token.twilio_auth_token_encrypted
    pages = [
        change_url(tenant_with_token),
        reverse("admin:tenants_tenant_changelist"),
        reverse("admin:tenants_tenant_history", args=[tenant_with_token.pk]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        content = response.content.decode()
        assert TOKEN not in content
        assert ciphertext not in content
        assert ciphertext[:20] not in content
    # Saving, then looking at the history, shows neither either.
    client.post(
        change_url(tenant_with_token), tenant_form(tenant_with_token, twilio_auth_token=TOKEN)
    )
    history = client.get(reverse("admin:tenants_tenant_history", args=[tenant_with_token.pk]))
    assert TOKEN not in history.content.decode()
    assert (
        stored(tenant_with_token).twilio_auth_token_encrypted[:20] not in history.content.decode()
    )


def test_the_changelist_says_whether_a_token_is_set(superuser, tenant_with_token, tenant_b) -> None:
    response = client_for(superuser).get(reverse("admin:tenants_tenant_changelist"))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'alt="True"' in content and 'alt="False"' in content


def test_leaving_the_token_empty_keeps_the_stored_one(superuser, tenant_with_token) -> None:
    before = tenant_with_token.twilio_auth_token_encrypted
    response = client_for(superuser).post(
        change_url(tenant_with_token), tenant_form(tenant_with_token, name="Acme Plumbing Ltd")
    )
    assert response.status_code == 302
    tenant = stored(tenant_with_token)
    assert tenant.name == "Acme Plumbing Ltd"
    assert tenant.twilio_auth_token_encrypted == before
    assert tenant.get_twilio_auth_token() == TOKEN


def test_the_clear_checkbox_removes_the_token(superuser, tenant_with_token) -> None:
    data = tenant_form(tenant_with_token, clear_twilio_auth_token="on")
    response = client_for(superuser).post(change_url(tenant_with_token), data)
    assert response.status_code == 302
    tenant = stored(tenant_with_token)
    assert not tenant.has_twilio_auth_token
    assert tenant.get_twilio_auth_token() == ""


def test_a_new_token_replaces_the_old_one(alice, tenant_with_token) -> None:
    data = tenant_form(tenant_with_token, twilio_auth_token="0" * 32)
    assert client_for(alice).post(change_url(tenant_with_token), data).status_code == 302
    assert stored(tenant_with_token).get_twilio_auth_token() == "0" * 32


def test_the_owner_cannot_change_slug_or_active(alice, tenant_a: Tenant) -> None:
    data = tenant_form(tenant_a, slug="taken-over", timezone="Europe/Paris")
    data.pop("active")
    response = client_for(alice).post(change_url(tenant_a), data)
    assert response.status_code == 302
    tenant = stored(tenant_a)
    assert (tenant.slug, tenant.active, tenant.timezone) == ("acme", True, "Europe/Paris")


def test_the_owner_gets_a_form_error_for_an_unknown_timezone(alice, tenant_a: Tenant) -> None:
    response = client_for(alice).post(
        change_url(tenant_a), tenant_form(tenant_a, timezone="Nowhere")
    )
    assert response.status_code == 200
    assert "timezone" in response.context["adminform"].form.errors
    assert stored(tenant_a).timezone == "UTC"


def test_a_viewer_can_read_the_tenant_but_not_change_it(bob, tenant_with_token) -> None:
    client = client_for(bob)
    page = client.get(change_url(tenant_with_token))
    assert page.status_code == 200
    assert TOKEN not in page.content.decode()
    assert tenant_with_token.twilio_auth_token_encrypted[:20] not in page.content.decode()
    data = tenant_form(tenant_with_token, name="Bob's now", clear_twilio_auth_token="on")
    assert client.post(change_url(tenant_with_token), data).status_code == 403
    tenant = stored(tenant_with_token)
    assert tenant.name == "Acme Plumbing"
    assert tenant.get_twilio_auth_token() == TOKEN


def test_only_the_owner_role_may_change_a_tenant(charlie, tenant_b: Tenant) -> None:
    client = client_for(charlie)
    assert client.get(change_url(tenant_b)).status_code == 200
    data = tenant_form(tenant_b, twilio_auth_token=TOKEN)
    assert client.post(change_url(tenant_b), data).status_code == 403
    assert not stored(tenant_b).has_twilio_auth_token


def test_outsider_cannot_set_another_tenants_token(charlie, tenant_with_token) -> None:
    data = tenant_form(tenant_with_token, twilio_auth_token="0" * 32)
    assert client_for(charlie).post(change_url(tenant_with_token), data).status_code == 404
    assert stored(tenant_with_token).get_twilio_auth_token() == TOKEN


def test_tenant_members_cannot_add_or_delete_tenants(alice, tenant_a: Tenant) -> None:
    client = client_for(alice)
    add = reverse("admin:tenants_tenant_add")
    assert client.get(add).status_code == 403
    assert client.post(add, {"name": "New", "slug": "new", "timezone": "UTC"}).status_code == 403
    delete = reverse("admin:tenants_tenant_delete", args=[tenant_a.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Tenant.objects.filter(slug="acme").exists()
    assert not Tenant.objects.filter(slug="new").exists()
