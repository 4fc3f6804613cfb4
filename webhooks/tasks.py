"""Celery entry points for webhooks. Thin: they call services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django_scopes import scope, scopes_disabled

from webhooks.services import deliveries_requeue_due, delivery_send


@shared_task(
    ignore_result=True,
    soft_time_limit=settings.WEBHOOK_TIMEOUT_SECONDS + 20,
    time_limit=settings.WEBHOOK_TIMEOUT_SECONDS + 30,
)
def deliver(delivery_id: str, tenant_id: str) -> str:
    """One attempt at one delivery (a repeated or early task changes nothing)."""
    with scope(tenant=tenant_id):
        return delivery_send(delivery_id=delivery_id, tenant_id=tenant_id)


@shared_task(ignore_result=True)
def requeue_due_deliveries() -> int:
    """Queue the deliveries whose task was lost, and the retries due later than a countdown."""
    with scopes_disabled():  # a housekeeping pass over every tenant
        return deliveries_requeue_due()
