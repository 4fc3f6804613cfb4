"""Who may see which tenant. Every entry point asks here before entering a scope."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model
from django.http import Http404

from tenants.models import WRITE_ROLES, Membership, Tenant

M = TypeVar("M", bound=Model)
logger = logging.getLogger(__name__)

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


# --- telling a user's open sockets (dashboard feed, talk page) that their access changed ---


def access_group(user_id: object) -> str:
    """The channel-layer group of one user's open sockets that follow their access."""
    return f"access.user.{user_id}"


def access_changed(user_ids: Iterable[object], *, ended_session: str = "") -> None:
    """After the current transaction commits, ask the open sockets of `user_ids` to check again
    what they may see and do (`ended_session`: a session that just logged out, whose sockets
    close at once). Best effort: a change is never refused because the channel layer is down."""
    ids = sorted({str(user_id) for user_id in user_ids if user_id is not None})
    if ids:
        transaction.on_commit(lambda: _send_access_changed(ids, ended_session))


def _send_access_changed(user_ids: list[str], ended_session: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "access.changed", "ended_session": ended_session}

    async def send() -> None:
        for user_id in user_ids:
            await layer.group_send(access_group(user_id), message)

    try:
        async_to_sync(send)()
    except Exception:
        logger.warning("could not tell open sockets of an access change", exc_info=True)
