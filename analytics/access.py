"""Which tenants a dashboard viewer may watch. Shared by the views and the websocket consumer."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404

from tenants.access import is_platform_staff, member_tenant_ids
from tenants.models import Tenant

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    """What one dashboard viewer looks at."""

    staff: bool
    tenant_ids: list | None  # None: every tenant (staff without a filter)
    tenant: Tenant | None  # the one tenant in view, if exactly one
    choices: list[Tenant]  # tenants the viewer may filter by


def dashboard_view(user: AbstractBaseUser | AnonymousUser, tenant_id: str | None) -> View:
    """The tenants `user` sees, narrowed to `tenant_id` when given.

    Raises Http404 for a tenant the user may not see (or a malformed id), and for a user who is
    neither platform staff nor a member of an active tenant.
    """
    staff = is_platform_staff(user)
    allowed = None if staff else member_tenant_ids(user)
    if allowed is not None and not allowed:
        raise Http404("No dashboard for this user.")
    choices = list(Tenant.objects.all() if staff else Tenant.objects.filter(id__in=allowed))
    if tenant_id:
        try:
            tenant = next(
                t for t in choices if str(t.id) == str(Tenant._meta.pk.to_python(tenant_id))
            )
        except (StopIteration, ValidationError) as exc:
            raise Http404("No such tenant.") from exc
        return View(staff=staff, tenant_ids=[tenant.id], tenant=tenant, choices=choices)
    if staff:
        return View(staff=True, tenant_ids=None, tenant=None, choices=choices)
    only = choices[0] if len(choices) == 1 else None
    return View(staff=False, tenant_ids=[t.id for t in choices], tenant=only, choices=choices)


# --- telling open dashboard sockets that what their user may see has changed ----------------


def access_group(user_id: object) -> str:
    """The channel-layer group of one user's open dashboard sockets."""
    return f"dashboard.user.{user_id}"


def access_changed(user_ids: Iterable[object], *, ended_session: str = "") -> None:
    """After the current transaction commits, ask the open dashboard sockets of `user_ids` to
    check again which tenants they may watch (`ended_session`: a session that just logged out,
    whose sockets close at once). Best effort: a change is never refused because the channel
    layer is down."""
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
        logger.warning("could not tell dashboards of an access change", exc_info=True)
