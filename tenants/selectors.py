"""Reads of tenants, numbers, API keys and limits.

The `unscoped_*` ones run before any tenant scope exists (webhook and API entry points)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django_scopes import scopes_disabled

from tenants import apikeys, directory
from tenants.models import ApiKey, PhoneNumber, RateLimit, Tenant
from tenants.phone import normalize_e164
from tenants.ratelimits import DEFAULT_MESSAGES


def unscoped_phone_number_by_dialled(number: str) -> PhoneNumber | None:
    """The PhoneNumber a caller dialled (Twilio's `To`), across all tenants, or None; with its
    tenant, assistant and versions, kept per process while unchanged (tenants.directory).

    A named bypass of tenant scoping: the dialled number is what tells us the tenant.
    """
    try:
        normalized = normalize_e164(number)
    except ValidationError:
        return None
    return directory.number(normalized, lambda: _phone_number_read(normalized))


def _phone_number_read(normalized: str) -> PhoneNumber | None:
    with scopes_disabled():
        try:
            # With the versions a call to it runs on (assistants.versions.version_for), but not
            # their frozen FAQ, tools and knowledge (read once per process: version_parts).
            numbers = PhoneNumber.objects.select_related(
                "tenant", "assistant", "assistant__published_version", "pinned_version"
            ).defer("assistant__published_version__parts", "pinned_version__parts")
            return numbers.get(number=normalized)
        except PhoneNumber.DoesNotExist:
            return None


def unscoped_api_key_for(key: str) -> ApiKey | None:
    """The active ApiKey that `key` is, across all tenants, or None.

    A named bypass of tenant scoping: the key is what tells us the tenant.
    """
    prefix = apikeys.split(key)
    if prefix is None:
        return None
    with scopes_disabled():
        api_key = (
            ApiKey.objects.select_related("tenant")
            .filter(prefix=prefix, revoked_at__isnull=True, tenant__active=True)
            .first()
        )
    if api_key is None or not apikeys.matches(key, api_key.hashed_secret):
        return None
    return api_key


def api_keys_of(*, tenant: Tenant) -> list[ApiKey]:
    return list(ApiKey.objects.filter(tenant=tenant).select_related("created_by"))


def effective_rate_limits(*, tenant: Tenant) -> list[dict]:
    """Every limit kind with the value that applies to `tenant` (own row, default, or none)."""
    own = {row.kind: row for row in RateLimit.objects.filter(tenant=tenant)}
    defaults = {row.kind: row for row in RateLimit.objects.filter(tenant__isnull=True)}
    rows = []
    for kind in RateLimit.Kind:
        row = own.get(kind) or defaults.get(kind)
        rows.append(
            {
                "kind": kind.value,
                "description": kind.label,
                "source": "tenant" if kind in own else ("default" if row else "none"),
                "limit": row.limit if row else None,
                "window_seconds": row.window_seconds if row else None,
                "action": row.action if row else None,
                "message": (row.message or DEFAULT_MESSAGES[kind]) if row else None,
            }
        )
    return rows
