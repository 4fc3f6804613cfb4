"""Reads of assistants across the tenants a user may see."""

from __future__ import annotations

import uuid

from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from tenants.access import is_platform_staff, member_tenant_ids


def assistant_for_user(*, user, assistant_id: object) -> AssistantConfig | None:
    """The assistant if `user` belongs to its (active) tenant or is platform staff, else None
    (the caller answers 404: another tenant's assistant does not exist for this user)."""
    try:
        assistant_id = uuid.UUID(str(assistant_id))
    except ValueError:
        return None
    # A named bypass: the tenant is not known until the assistant is found; membership decides.
    with scopes_disabled():
        assistants = AssistantConfig.objects.select_related("tenant").filter(
            id=assistant_id, tenant__active=True
        )
        if not is_platform_staff(user):
            assistants = assistants.filter(tenant_id__in=member_tenant_ids(user))
        return assistants.first()
