"""Celery entry points for campaigns. Thin: they enter the tenant's scope and call services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django_scopes import scope

from campaigns.dispatch import campaigns_dial, unscoped_tenants_dialling
from tenants.models import Tenant


@shared_task
def dial_campaigns() -> int:
    """Beat, every CAMPAIGN_TICK_SECONDS: one dialler task per tenant with a running campaign."""
    tenants = unscoped_tenants_dialling()
    for tenant_id in tenants:
        dial_tenant_campaigns.apply_async((tenant_id,), expires=settings.CAMPAIGN_TICK_SECONDS)
    return len(tenants)


@shared_task
def dial_tenant_campaigns(tenant_id: str) -> int:
    """Dial one tenant's due contacts for up to a tick (another dialler of the tenant: none)."""
    tenant = Tenant.objects.filter(pk=tenant_id, active=True).first()
    if tenant is None:
        return 0
    with scope(tenant=tenant.id):
        return campaigns_dial(tenant=tenant, seconds=settings.CAMPAIGN_TICK_SECONDS)
