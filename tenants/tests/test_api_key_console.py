from __future__ import annotations

import re

import pytest
from django.test import Client
from django_scopes import scopes_disabled

from tenants.models import ApiKey, Membership, Role
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db

URL = "/console/api-keys/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown_key(response) -> str:
    match = re.search(r'<code id="new-key">(vpk_[^<]+)</code>', response.content.decode())
    assert match, "the new key is shown"
    return match.group(1)


def test_an_owner_creates_a_key_that_is_shown_once_and_works(alice, tenant_a, assistant_a, api):
    client = logged_in(alice)
    response = client.post(URL, {"name": "CRM sync", "role": "admin"})
    assert response.status_code == 200
    key = shown_key(response)
    assert api(key=key).get("/api/v1/assistants/").status_code == 200
    # Shown once: the list shows only the prefix from now on.
    page = client.get(URL).content.decode()
    assert key not in page
    assert key.split(".")[0] in page
    with scopes_disabled():
        row = ApiKey.objects.get(tenant=tenant_a)
    assert (row.name, row.created_by, row.role) == ("CRM sync", alice, Role.ADMIN)


def test_an_owner_revokes_a_key(alice, tenant_a, api):
    with scopes_disabled():
        row, key = api_key_create(tenant=tenant_a, name="Old")
    response = logged_in(alice).post(f"{URL}{row.id}/revoke/")
    assert response.status_code == 302
    assert api(key=key).get("/api/v1/assistants/").status_code == 401
    with scopes_disabled():
        assert ApiKey.objects.get(id=row.id).revoked_at is not None


def test_a_bad_form_gets_400_and_creates_nothing(alice, tenant_a):
    response = logged_in(alice).post(URL, {"name": "", "role": "superuser"})
    assert response.status_code == 400
    with scopes_disabled():
        assert not ApiKey.objects.exists()


def test_viewers_and_admins_are_not_owners(bob, charlie):
    assert logged_in(bob).get(URL).status_code == 404
    assert logged_in(charlie).get(URL).status_code == 404
    assert logged_in(bob).post(URL, {"name": "x", "role": "admin"}).status_code == 404


def test_the_outsider_cannot_revoke_or_see_another_tenants_keys(charlie, tenant_a, tenant_b):
    Membership.objects.filter(user=charlie).update(role=Role.OWNER)
    with scopes_disabled():
        row, _ = api_key_create(tenant=tenant_a, name="Acme key")
    client = logged_in(charlie)
    assert "Acme key" not in client.get(URL).content.decode()
    assert client.get(URL, {"tenant": tenant_a.slug}).status_code == 404
    assert client.post(f"{URL}{row.id}/revoke/").status_code == 404
    assert client.post(f"{URL}{row.id}/revoke/?tenant={tenant_a.slug}").status_code == 404
    with scopes_disabled():
        assert ApiKey.objects.get(id=row.id).revoked_at is None


def test_the_page_needs_a_login():
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


# --- the admin ------------------------------------------------------------------------------


def test_an_owner_creates_a_key_in_the_admin_and_sees_it_once(alice, tenant_a, api):
    client = logged_in(alice)
    response = client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": str(tenant_a.id), "name": "From admin", "role": "viewer"},
        follow=True,
    )
    assert response.status_code == 200
    match = re.search(r"(vpk_[a-z0-9]{8}\.[A-Za-z0-9_\-]+)", response.content.decode())
    assert match
    assert api(key=match.group(1)).get("/api/v1/assistants/").status_code == 200
    with scopes_disabled():
        row = ApiKey.objects.get(tenant=tenant_a)
    assert (row.name, row.role, row.created_by) == ("From admin", Role.VIEWER, alice)
    assert (
        match.group(1) not in client.get(f"/admin/tenants/apikey/{row.id}/change/").content.decode()
    )


def test_an_owner_revokes_in_the_admin(alice, tenant_a):
    with scopes_disabled():
        row, _ = api_key_create(tenant=tenant_a, name="Old")
    logged_in(alice).post(
        "/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [str(row.id)]}
    )
    with scopes_disabled():
        assert ApiKey.objects.get(id=row.id).revoked_at is not None


def test_the_admin_hides_keys_from_outsiders_and_refuses_viewers(bob, charlie, tenant_a):
    with scopes_disabled():
        row, _ = api_key_create(tenant=tenant_a, name="Acme key")
    assert logged_in(charlie).get(f"/admin/tenants/apikey/{row.id}/change/").status_code == 404
    assert "Acme key" not in logged_in(charlie).get("/admin/tenants/apikey/").content.decode()
    response = logged_in(bob).post(
        "/admin/tenants/apikey/add/", {"tenant": str(tenant_a.id), "name": "x", "role": "admin"}
    )
    assert response.status_code == 403
    with scopes_disabled():
        assert ApiKey.objects.count() == 1


KEY_PATTERN = re.compile(r"vpk_[a-z0-9]{8}\.[A-Za-z0-9_\-]+")


def stored_outside_the_response(client: Client) -> str:
    """Everything the server left with the browser or in its session: cookies (messages
    decoded) and the session's data."""
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.test import RequestFactory

    cookies = {name: morsel.value for name, morsel in client.cookies.items()}
    request = RequestFactory().get("/")
    request.COOKIES = cookies
    messages = CookieStorage(request)._decode(cookies.get("messages", "")) or []
    session = dict(client.session.items())
    return f"{cookies} {[str(m) for m in messages]} {session}"


def test_a_new_admin_key_is_shown_in_the_response_and_kept_nowhere_else(alice, tenant_a, api):
    client = logged_in(alice)
    response = client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": str(tenant_a.id), "name": "From admin", "role": "admin"},
    )
    assert not KEY_PATTERN.search(stored_outside_the_response(client))
    assert response.status_code == 200
    match = KEY_PATTERN.search(response.content.decode())
    assert match, "the new key is shown"
    assert "no-store" in response["Cache-Control"]
    assert api(key=match.group(0)).get("/api/v1/assistants/").status_code == 200
    # Shown once: not on the next page either.
    assert match.group(0) not in client.get("/admin/tenants/apikey/").content.decode()
    assert not KEY_PATTERN.search(stored_outside_the_response(client))


def test_a_new_console_key_is_kept_nowhere_but_the_response(alice, tenant_a):
    client = logged_in(alice)
    response = client.post(URL, {"name": "CRM sync", "role": "admin"})
    assert shown_key(response)
    assert "no-store" in response["Cache-Control"]
    assert not KEY_PATTERN.search(stored_outside_the_response(client))
