"""Celery entry points for campaigns. Thin: they enter the tenant's scope and call services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django_scopes import scope

from campaigns import callbacks
from campaigns.dispatch import campaigns_dial, unscoped_tenants_dialling
from campaigns.models import Recording
from campaigns.numbers import number_rewire, number_unwire
from campaigns.recordings import recording_fetch, recordings_expire
from tenants import crypto
from tenants.models import PhoneNumber, Tenant
from tenants.twilio_numbers import TwilioLookupError

logger = logging.getLogger(__name__)


@shared_task
def dial_campaigns() -> int:
    """Beat, every CAMPAIGN_TICK_SECONDS: one dialler task per tenant with a running campaign,
    and one that places the callbacks due."""
    tenants = unscoped_tenants_dialling()
    for tenant_id in tenants:
        dial_tenant_campaigns.apply_async((tenant_id,), expires=settings.CAMPAIGN_TICK_SECONDS)
    callbacks_due = callbacks.unscoped_callbacks_due_exist()
    if callbacks_due:
        place_callbacks.apply_async(expires=settings.CAMPAIGN_TICK_SECONDS)
    level = logging.INFO if tenants or callbacks_due else logging.DEBUG
    logger.log(
        level,
        "dialler tick: %d tenant(s) dialling%s",
        len(tenants),
        ", callbacks due" if callbacks_due else "",
        extra={"tenants_dialling": len(tenants), "callbacks_due": callbacks_due},
    )
    return len(tenants)


@shared_task(
    soft_time_limit=settings.CAMPAIGN_TICK_SECONDS + 30,
    time_limit=settings.CAMPAIGN_TICK_SECONDS + 40,
)
def place_callbacks() -> int:
    """Place the callbacks assistants promised that are due (every tenant's)."""
    return callbacks.callbacks_place_due()


# A dialler works for one tick; the limit leaves room for its last Twilio request.
@shared_task(
    soft_time_limit=settings.CAMPAIGN_TICK_SECONDS + 30,
    time_limit=settings.CAMPAIGN_TICK_SECONDS + 40,
)
def dial_tenant_campaigns(tenant_id: str) -> int:
    """Dial one tenant's due contacts for up to a tick (another dialler of the tenant: none)."""
    tenant = Tenant.objects.filter(pk=tenant_id, active=True).first()
    if tenant is None:
        return 0
    with scope(tenant=tenant.id):
        return campaigns_dial(tenant=tenant, seconds=settings.CAMPAIGN_TICK_SECONDS)


@shared_task(soft_time_limit=120, time_limit=150)
def fetch_recording(tenant_id: str, recording_id: str) -> str:
    """Copy one recording from Twilio into media storage; returns its status."""
    with scope(tenant=tenant_id):
        recording = (
            Recording.objects.filter(tenant_id=tenant_id, pk=recording_id)
            .select_related("call__tenant")
            .first()
        )
        if recording is None:
            return "not found"
        return recording_fetch(recording=recording).status


@shared_task(soft_time_limit=600, time_limit=660)
def expire_recordings() -> int:
    """Beat, hourly: delete recordings past their retention period (the assistant's, else the
    tenant's)."""
    return recordings_expire()


@shared_task(
    autoretry_for=(TwilioLookupError,), retry_backoff=30, max_retries=5, soft_time_limit=60
)
def unwire_number(account_sid: str, auth_token_encrypted: str, number: str) -> bool:
    """Point a number that left the platform back at nothing (Twilio retried if down). The
    account's token travels encrypted: its tenant may be deleted by now."""
    try:
        token = crypto.decrypt(auth_token_encrypted)
    except ValueError:
        logger.error("cannot un-wire a number: its account's token cannot be decrypted")
        return False
    return number_unwire(account_sid=account_sid, auth_token=token, number=number)


@shared_task(
    autoretry_for=(TwilioLookupError,), retry_backoff=30, max_retries=5, soft_time_limit=120
)
def rewire_tenant_numbers(tenant_id: str) -> int:
    """A tenant switched back on: its numbers that point at nothing point at the platform
    again; returns how many."""
    tenant = Tenant.objects.filter(pk=tenant_id, active=True).first()
    if tenant is None or not (tenant.twilio_account_sid and tenant.has_twilio_auth_token):
        return 0
    with scope(tenant=tenant.id):
        numbers = list(PhoneNumber.objects.filter(tenant=tenant).values_list("number", flat=True))
    return sum(number_rewire(tenant=tenant, number=number) for number in numbers)
