from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.http import Http404
from django_scopes import scope

from tenants.access import (
    can_write,
    get_owned_or_404,
    get_tenant_for_user,
    is_platform_staff,
    member_tenant_ids,
)
from tenants.models import Membership, PhoneNumber, Role, Tenant

pytestmark = pytest.mark.django_db


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username=username, password="x", **extra)


def grant_all_tenants(user) -> None:
    user.user_permissions.add(Permission.objects.get(codename="view_all_tenants"))


def test_superusers_are_platform_staff(superuser) -> None:
    assert is_platform_staff(superuser)


def test_staff_with_the_all_tenants_permission_are_platform_staff(db) -> None:
    user = make_user("pat", is_staff=True)
    grant_all_tenants(user)
    assert is_platform_staff(get_user_model().objects.get(pk=user.pk))


def test_the_permission_without_staff_status_is_not_enough(db) -> None:
    user = make_user("pat")
    grant_all_tenants(user)
    assert not is_platform_staff(get_user_model().objects.get(pk=user.pk))


def test_tenant_members_and_strangers_are_not_platform_staff(alice, charlie) -> None:
    assert not is_platform_staff(alice)
    assert not is_platform_staff(charlie)
    assert not is_platform_staff(AnonymousUser())


def test_an_inactive_superuser_is_not_platform_staff(superuser) -> None:
    superuser.is_active = False
    assert not is_platform_staff(superuser)
    assert member_tenant_ids(superuser) == []


def test_it_lists_the_tenants_of_a_member(alice, charlie, tenant_a, tenant_b) -> None:
    assert member_tenant_ids(alice) == [tenant_a.pk]
    assert member_tenant_ids(charlie) == [tenant_b.pk]
    assert member_tenant_ids(AnonymousUser()) == []


def test_it_lists_only_the_tenants_where_a_member_has_one_of_the_roles(
    bob, tenant_a, tenant_b
) -> None:
    Membership.objects.create(user=bob, tenant=tenant_b, role=Role.OWNER)
    assert set(member_tenant_ids(bob)) == {tenant_a.pk, tenant_b.pk}
    assert member_tenant_ids(bob, roles=[Role.OWNER, Role.ADMIN]) == [tenant_b.pk]


def test_an_inactive_tenant_is_not_listed(alice, tenant_a) -> None:
    tenant_a.active = False
    tenant_a.save()
    assert member_tenant_ids(alice) == []


def test_owners_and_admins_can_write_viewers_and_outsiders_cannot(
    alice, bob, charlie, superuser, tenant_a, tenant_b
) -> None:
    assert can_write(alice, tenant_a.pk)
    assert not can_write(bob, tenant_a.pk)
    assert not can_write(charlie, tenant_a.pk)
    assert can_write(charlie, tenant_b.pk)
    assert can_write(superuser, tenant_a.pk)
    assert not can_write(AnonymousUser(), tenant_a.pk)


def test_it_gives_a_member_their_tenant(alice, bob, tenant_a) -> None:
    assert get_tenant_for_user(alice, tenant_a.pk) == tenant_a
    assert get_tenant_for_user(bob, str(tenant_a.pk)) == tenant_a


def test_outsider_gets_404_for_another_tenant(charlie, tenant_a) -> None:
    with pytest.raises(Http404):
        get_tenant_for_user(charlie, tenant_a.pk)


@pytest.mark.parametrize("tenant_id", ["not-a-uuid", "", None, 42, str(uuid.uuid4())])
def test_a_malformed_or_unknown_tenant_id_is_a_404(alice, tenant_id: object) -> None:
    with pytest.raises(Http404):
        get_tenant_for_user(alice, tenant_id)


def test_platform_staff_get_any_tenant(superuser, tenant_a, tenant_b) -> None:
    assert get_tenant_for_user(superuser, tenant_b.pk) == tenant_b


def test_anonymous_gets_404(tenant_a) -> None:
    with pytest.raises(Http404):
        get_tenant_for_user(AnonymousUser(), tenant_a.pk)


def test_it_gives_an_object_of_the_tenant(number_a: PhoneNumber, tenant_a: Tenant) -> None:
    with scope(tenant=tenant_a):
        assert get_owned_or_404(PhoneNumber, tenant=tenant_a, pk=number_a.pk) == number_a


def test_it_gives_404_for_an_object_of_another_tenant(
    number_a: PhoneNumber, tenant_b: Tenant
) -> None:
    # Even with a scope that would let the row through, the explicit filter holds.
    with scope(tenant=[number_a.tenant_id, tenant_b.pk]), pytest.raises(Http404):
        get_owned_or_404(PhoneNumber, tenant=tenant_b, pk=number_a.pk)


@pytest.mark.parametrize("pk", ["not-a-uuid", "", None, 7])
def test_it_gives_404_for_a_malformed_object_id(tenant_a: Tenant, pk: object) -> None:
    with scope(tenant=tenant_a), pytest.raises(Http404):
        get_owned_or_404(PhoneNumber, tenant=tenant_a, pk=pk)
