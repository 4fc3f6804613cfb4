from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory
from django_scopes import ScopeError, get_scope

from tenants.middleware import TenantScopeMiddleware
from tenants.models import PhoneNumber

pytestmark = pytest.mark.django_db


def visible_numbers(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"numbers": sorted(PhoneNumber.objects.values_list("number", flat=True))})


def numbers_seen_by(user) -> list[str]:
    request = RequestFactory().get("/")
    if user is not None:
        request.user = user
    response = TenantScopeMiddleware(visible_numbers)(request)
    return json.loads(response.content)["numbers"]


def test_a_member_sees_only_their_tenants_rows(alice, bob, charlie, number_a, number_b) -> None:
    assert numbers_seen_by(alice) == [number_a.number]
    assert numbers_seen_by(bob) == [number_a.number]
    assert numbers_seen_by(charlie) == [number_b.number]


def test_platform_staff_see_every_tenants_rows(superuser, number_a, number_b) -> None:
    staff = get_user_model().objects.create_user(username="pat", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_all_tenants"))
    staff = get_user_model().objects.get(pk=staff.pk)
    both = sorted([number_a.number, number_b.number])
    assert numbers_seen_by(superuser) == both
    assert numbers_seen_by(staff) == both


def test_anonymous_visitors_and_users_without_membership_see_nothing(number_a, number_b) -> None:
    loner = get_user_model().objects.create_user(username="lonely", password="x", is_staff=True)
    assert numbers_seen_by(AnonymousUser()) == []
    assert numbers_seen_by(loner) == []
    # A request that never went through authentication is treated like an anonymous one.
    assert numbers_seen_by(None) == []


def test_a_member_of_an_inactive_tenant_sees_nothing(alice, number_a, tenant_a) -> None:
    tenant_a.active = False
    tenant_a.save()
    assert numbers_seen_by(alice) == []


def test_the_scope_ends_with_the_request(alice, number_a) -> None:
    numbers_seen_by(alice)
    assert "tenant" not in get_scope()
    with pytest.raises(ScopeError):
        PhoneNumber.objects.count()


def test_the_scope_ends_when_the_view_raises(alice, number_a) -> None:
    def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("boom")

    request = RequestFactory().get("/")
    request.user = alice
    with pytest.raises(RuntimeError):
        TenantScopeMiddleware(broken)(request)
    with pytest.raises(ScopeError):
        PhoneNumber.objects.count()
