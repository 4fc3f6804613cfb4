"""Who may see which tenant. Every entry point asks here before entering a scope."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Model
from django.http import Http404

from tenants.models import WRITE_ROLES, Membership, Tenant

M = TypeVar("M", bound=Model)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def is_platform_staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Superusers, and staff granted `tenants.view_all_tenants`, see every tenant."""
    if not (user.is_authenticated and user.is_active):
        return False
    return bool(user.is_superuser or (user.is_staff and user.has_perm("tenants.view_all_tenants")))


def member_tenant_ids(
    user: AbstractBaseUser | AnonymousUser, *, roles: Iterable[str] | None = None
) -> list:
    """Ids of the active tenants `user` belongs to (optionally with one of `roles`)."""
    if not (user.is_authenticated and user.is_active):
        return []
    memberships = Membership.objects.filter(user=user, tenant__active=True)
    if roles is not None:
        memberships = memberships.filter(role__in=list(roles))
    return list(memberships.values_list("tenant_id", flat=True))


def can_write(user: AbstractBaseUser | AnonymousUser, tenant_id: object) -> bool:
    return is_platform_staff(user) or tenant_id in member_tenant_ids(user, roles=WRITE_ROLES)


def get_tenant_for_user(user: AbstractBaseUser | AnonymousUser, tenant_id: object) -> Tenant:
    """The tenant if `user` may see it, else 404 (never 403: no existence leak)."""
    if is_platform_staff(user):
        qs = Tenant.objects.all()
    else:
        qs = Tenant.objects.filter(id__in=member_tenant_ids(user))
    try:
        return qs.get(id=tenant_id)
    except (Tenant.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        # A malformed id (ValidationError for a UUID field) is answered like an unknown one.
        raise Http404("No such tenant.") from exc


def get_owned_or_404(model: type[M], *, tenant: Tenant, pk: object) -> M:
    """An object of `model` belonging to `tenant`, else 404."""
    try:
        return model.objects.get(tenant=tenant, pk=pk)  # type: ignore[attr-defined]
    except (model.DoesNotExist, ValidationError, ValueError, TypeError) as exc:  # type: ignore[attr-defined]
        raise Http404("Not found.") from exc
