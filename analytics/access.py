"""Which tenants a dashboard viewer may watch. Shared by the views and the websocket consumer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
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
