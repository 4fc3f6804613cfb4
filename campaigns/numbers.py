"""Numbers wired by the platform: a tenant that brings its own Twilio account imports numbers
from it, and the platform points each one's voice URL, fallback URL and status callback at
itself through Twilio's REST API; a number removed from the platform is pointed at nothing
again (only if it still points at the platform)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from assistants.models import AssistantConfig
from calls.transports.signatures import auth_token_for
from tenants import services as tenant_services
from tenants.models import PhoneNumber, Tenant
from tenants.twilio_numbers import AccountNumber, account_numbers, number_point

WEBHOOK_PATHS = {
    "voice_url": "/twilio/voice",
    "fallback_url": "/twilio/fallback",
    "status_callback": "/twilio/status",
}


class NoOwnAccount(Exception):
    """Numbers on the platform's own account are assigned by staff, not imported."""


def _account(tenant: Tenant) -> tuple[str, str]:
    if not (tenant.twilio_account_sid and tenant.has_twilio_auth_token):
        raise NoOwnAccount("Bring your own Twilio account (SID and auth token) to import numbers.")
    return tenant.twilio_account_sid, auth_token_for(tenant)


def _webhooks() -> dict[str, str]:
    if not settings.PUBLIC_BASE_URL:
        raise ValidationError("PUBLIC_BASE_URL is not set: Twilio would not know where to call.")
    return {name: settings.PUBLIC_BASE_URL + path for name, path in WEBHOOK_PATHS.items()}


def numbers_in_account(*, tenant: Tenant) -> list[dict]:
    """The numbers of the tenant's Twilio account: whether each is on the platform already,
    and whether it points at the platform. Raises NoOwnAccount or TwilioLookupError."""
    sid, token = _account(tenant)
    imported = set(PhoneNumber.objects.filter(tenant=tenant).values_list("number", flat=True))
    ours = settings.PUBLIC_BASE_URL and settings.PUBLIC_BASE_URL + WEBHOOK_PATHS["voice_url"]
    return [
        {
            "number": item.number,
            "imported": item.number in imported,
            "wired": bool(ours) and item.voice_url == ours,
        }
        for item in account_numbers(account_sid=sid, auth_token=token)
    ]


def number_import(
    *, tenant: Tenant, number: str, assistant: AssistantConfig | None = None, label: str = ""
) -> PhoneNumber:
    """Add a number of the tenant's own account and point its webhooks at the platform; nothing
    is kept when Twilio refuses. Raises NoOwnAccount, ValidationError, TwilioLookupError."""
    sid, token = _account(tenant)
    webhooks = _webhooks()
    with transaction.atomic():
        phone_number = tenant_services.phone_number_create(
            tenant=tenant, number=number, assistant=assistant, label=label
        )
        found = _find(sid, token, phone_number.number)
        if found is None:
            raise ValidationError({"number": "Your Twilio account does not hold this number."})
        number_point(account_sid=sid, auth_token=token, number_sid=found.sid, **webhooks)
    return phone_number


def number_unwire(*, account_sid: str, auth_token: str, number: str) -> bool:
    """Point a number that left the platform (removed, or its tenant deleted or switched off)
    at nothing, if it still points at the platform. Returns whether it was changed. The
    account is given, not read from the tenant: a deleted tenant's account is gone."""
    if not (account_sid and auth_token and settings.PUBLIC_BASE_URL):
        return False
    found = _find(account_sid, auth_token, number)
    ours = settings.PUBLIC_BASE_URL + WEBHOOK_PATHS["voice_url"]
    if found is None or found.voice_url != ours:
        return False
    empty = dict.fromkeys(WEBHOOK_PATHS, "")
    number_point(account_sid=account_sid, auth_token=auth_token, number_sid=found.sid, **empty)
    return True


def number_rewire(*, tenant: Tenant, number: str) -> bool:
    """Point a number of a tenant switched back on at the platform again, if it points at
    nothing (a number the tenant pointed elsewhere meanwhile is left alone)."""
    sid, token = _account(tenant)
    found = _find(sid, token, number)
    if found is None or found.voice_url:
        return False
    number_point(account_sid=sid, auth_token=token, number_sid=found.sid, **_webhooks())
    return True


def _find(sid: str, token: str, number: str) -> AccountNumber | None:
    listed = account_numbers(account_sid=sid, auth_token=token)
    return next((item for item in listed if item.number == number), None)
