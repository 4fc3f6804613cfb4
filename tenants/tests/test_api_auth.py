from __future__ import annotations

import pytest
from django.test import override_settings
from django_scopes import scopes_disabled

from tenants.api_base import TenantViewSet
from tenants.models import ApiKey, Membership, Role
from tenants.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db

URL = "/api/v1/assistants/"


def test_a_key_reads_its_tenants_data(api, key_a, assistant_a, assistant_b):
    response = api(key=key_a).get(URL)
    assert response.status_code == 200
    assert [a["name"] for a in response.json()["results"]] == ["Acme front desk"]


def test_the_key_is_stored_hashed_with_a_visible_prefix(key_a, tenant_a):
    with scopes_disabled():
        row = ApiKey.objects.get(tenant=tenant_a)
    assert key_a.startswith(f"vpk_{row.prefix}.")
    assert key_a not in (row.hashed_secret, row.prefix)
    assert len(row.hashed_secret) == 64


def test_it_records_when_a_key_was_last_used(api, key_a, tenant_a):
    api(key=key_a).get(URL)
    with scopes_disabled():
        assert ApiKey.objects.get(tenant=tenant_a).last_used_at is not None


def test_the_x_api_key_header_works_too(api, key_a):
    client = api()
    client.credentials(HTTP_X_API_KEY=key_a)
    assert client.get(URL).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Bearer vpk_abcdefgh.not-the-secret",
        "Bearer nonsense",
        "Bearer " + "x" * 10000,
        "Bearer ",
    ],
)
def test_wrong_keys_get_401(api, key_a, header):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(URL)
    assert response.status_code == 401
    assert "detail" in response.json()


def test_a_key_with_the_right_prefix_but_a_wrong_secret_gets_401(api, key_a):
    prefix = key_a.split(".")[0]
    assert api(key=f"{prefix}.wrong-secret").get(URL).status_code == 401


def test_a_revoked_key_gets_401(api, key_a, tenant_a):
    with scopes_disabled():
        api_key_revoke(api_key=ApiKey.objects.get(tenant=tenant_a))
    response = api(key=key_a).get(URL)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API key."}


def test_a_key_of_an_inactive_tenant_gets_401(api, key_a, tenant_a):
    tenant_a.active = False
    tenant_a.save()
    assert api(key=key_a).get(URL).status_code == 401


def test_no_credentials_get_401(api):
    response = api().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_read_only_key_reads_but_cannot_write(api, readonly_key_a, assistant_a):
    client = api(key=readonly_key_a)
    assert client.get(URL).status_code == 200
    response = client.post(URL, {"name": "New"}, format="json")
    assert response.status_code == 403
    response = client.delete(f"{URL}{assistant_a.id}/")
    assert response.status_code == 403


def test_a_key_naming_another_tenant_gets_404(api, key_a, tenant_b):
    client = api(key=key_a)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_a}", HTTP_X_TENANT=tenant_b.slug)
    assert client.get(URL).status_code == 404


def test_a_member_of_several_tenants_names_one(api, alice, tenant_a, tenant_b, assistant_b):
    Membership.objects.create(user=alice, tenant=tenant_b, role=Role.VIEWER)
    client = api(alice)
    response = client.get(URL)
    assert response.status_code == 400
    assert "X-Tenant" in response.json()
    response = client.get(URL, HTTP_X_TENANT="bravo")
    assert [a["name"] for a in response.json()["results"]] == ["Bravo orders"]
    # Her role in B is viewer: no writes there, even though she owns A.
    assert client.post(URL, {"name": "X"}, format="json", HTTP_X_TENANT="bravo").status_code == 403


def test_a_user_naming_a_tenant_they_do_not_belong_to_gets_404(api, charlie, tenant_a):
    assert api(charlie).get(URL, HTTP_X_TENANT=tenant_a.slug).status_code == 404
    assert api(charlie).get(URL, HTTP_X_TENANT=str(tenant_a.id)).status_code == 404


def test_a_user_without_any_tenant_gets_404(api, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="x")
    assert api(user).get(URL).status_code == 404


def test_platform_staff_name_the_tenant(api, superuser, tenant_a, assistant_a):
    client = api(superuser)
    assert client.get(URL).status_code == 400
    response = client.get(URL, HTTP_X_TENANT=tenant_a.slug)
    assert response.status_code == 200
    assert [a["name"] for a in response.json()["results"]] == ["Acme front desk"]


@override_settings(API_THROTTLE_RATE="3/min")
def test_requests_are_throttled_per_key(api, key_a, key_b):
    client = api(key=key_a)
    assert [client.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert "Retry-After" in client.get(URL)
    # Another key has its own budget.
    assert api(key=key_b).get(URL).status_code == 200


def test_the_base_class_refuses_a_get_queryset_override():
    with pytest.raises(TypeError, match="get_queryset"):

        class Leaky(TenantViewSet):
            def get_queryset(self):
                return ApiKey.objects.all()


def test_api_key_create_rejects_an_empty_name(tenant_a):
    from django.core.exceptions import ValidationError

    with scopes_disabled(), pytest.raises(ValidationError):
        api_key_create(tenant=tenant_a, name="  ")


def test_the_scope_is_left_as_it_was_after_a_request(api, key_a):
    from django_scopes.state import get_scope

    before = dict(get_scope())
    api(key=key_a).get(URL)
    assert dict(get_scope()) == before
