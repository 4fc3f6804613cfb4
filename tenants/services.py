"""Writes for tenants, numbers, API keys and rate limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django_scopes import scopes_disabled

from tenants import apikeys
from tenants.models import ApiKey, Membership, PhoneNumber, Role, Tenant
from tenants.phone import normalize_e164
from tenants.twilio_numbers import TwilioLookupError, account_holds_number

# last_used_at is written at most this often per key, so API traffic is not a write per request.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


def membership_grant(*, user, tenant: Tenant, role: str = Role.VIEWER) -> Membership:
    """Give `user` `role` in `tenant` (or change the role they have)."""
    membership, _ = Membership.objects.update_or_create(
        user=user, tenant=tenant, defaults={"role": role}
    )
    return membership


class NumberClaimRefused(Exception):
    """A tenant may not take this number itself. `reason`:
    STAFF_ONLY: the tenant uses the platform's Twilio account, whose numbers staff assign;
    UNVERIFIED: the tenant's own Twilio account does not hold it (or Twilio refused the account's
    credentials); UNAVAILABLE: Twilio could not be asked, try again."""

    STAFF_ONLY = "staff_only"
    UNVERIFIED = "unverified"
    UNAVAILABLE = "unavailable"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def phone_number_claim_check(*, tenant: Tenant, number: str) -> None:
    """Refuse (NumberClaimRefused) unless `tenant` may take the E.164 `number` itself: a number
    Twilio lists on the tenant's own account. Decided before anything is looked up about the
    number on the platform, so the answer never tells whether another tenant holds it."""
    if not (tenant.twilio_account_sid and tenant.has_twilio_auth_token):
        raise NumberClaimRefused(
            "Numbers on the platform's Twilio account are assigned by platform staff: ask them "
            "to add this number to your tenant, or add your own Twilio account's SID and auth "
            "token to your tenant first.",
            reason=NumberClaimRefused.STAFF_ONLY,
        )
    try:
        held = account_holds_number(
            account_sid=tenant.twilio_account_sid,
            auth_token=tenant.get_twilio_auth_token(),
            number=number,
        )
    except TwilioLookupError as exc:
        if exc.permanent:
            raise NumberClaimRefused(
                "Twilio refused your tenant's account SID and auth token: correct them (admin, "
                "Tenants), then add the number again.",
                reason=NumberClaimRefused.UNVERIFIED,
            ) from exc
        raise NumberClaimRefused(
            "Twilio could not be asked whether your account holds this number; try again in a "
            "minute.",
            reason=NumberClaimRefused.UNAVAILABLE,
        ) from exc
    if not held:
        raise NumberClaimRefused(
            f"Twilio does not list this number on your account {tenant.twilio_account_sid}: "
            "add numbers that your own Twilio account holds.",
            reason=NumberClaimRefused.UNVERIFIED,
        )


def _normalized(number: str) -> str:
    try:
        return normalize_e164(number)
    except ValidationError as exc:
        raise ValidationError({"number": exc.messages}) from exc


def phone_number_create(
    *,
    tenant: Tenant,
    number: str,
    assistant=None,
    label: str = "",
    active: bool = True,
    pinned_version=None,
    assigned_by_staff: bool = False,
) -> PhoneNumber:
    """Add `number` to `tenant`. Unless platform staff assign it, the tenant's own Twilio
    account must hold it (phone_number_claim_check)."""
    number = _normalized(number)
    _check_assistant_tenant(tenant=tenant, assistant=assistant)
    if not assigned_by_staff:
        phone_number_claim_check(tenant=tenant, number=number)
    phone_number = PhoneNumber(
        tenant=tenant,
        number=number,
        assistant=assistant,
        label=label,
        active=active,
        pinned_version=pinned_version,
    )
    phone_number.full_clean()
    phone_number.save()
    return phone_number


def phone_number_update(
    *, phone_number: PhoneNumber, assigned_by_staff: bool = False, **changes: Any
) -> PhoneNumber:
    """Change `number`, `assistant`, `label` or `active`; validated like a new number (a new
    `number` too: unless staff assign it, the tenant's own Twilio account must hold it)."""
    allowed = {"number", "assistant", "label", "active", "pinned_version"}
    if unknown := set(changes) - allowed:
        raise ValueError(f"cannot change {sorted(unknown)}")
    if "assistant" in changes:
        _check_assistant_tenant(tenant=phone_number.tenant, assistant=changes["assistant"])
        if changes["assistant"] != phone_number.assistant:  # a pinned version is the old one's
            changes.setdefault("pinned_version", None)
    if "number" in changes:
        changes["number"] = _normalized(changes["number"])
        if changes["number"] != phone_number.number and not assigned_by_staff:
            phone_number_claim_check(tenant=phone_number.tenant, number=changes["number"])
    for name, value in changes.items():
        setattr(phone_number, name, value)
    phone_number.full_clean()
    phone_number.save()
    return phone_number


def phone_number_delete(*, phone_number: PhoneNumber) -> None:
    phone_number.delete()


def _check_assistant_tenant(*, tenant: Tenant, assistant) -> None:
    if assistant is not None and assistant.tenant_id != tenant.id:
        raise ValidationError({"assistant": "Choose an assistant of this number's tenant."})


def api_key_create(
    *, tenant: Tenant, name: str, role: str = Role.ADMIN, created_by=None
) -> tuple[ApiKey, str]:
    """A new key for `tenant`; returns the row and the full key, which is never shown again."""
    prefix, key = apikeys.generate()
    api_key = ApiKey(
        tenant=tenant,
        name=name.strip(),
        role=role,
        prefix=prefix,
        hashed_secret=apikeys.hash_key(key),
        created_by=created_by,
    )
    api_key.full_clean()
    api_key.save()
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke `api_key` at once (idempotent: the first revocation time is kept)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record that `api_key` was used (at most once a minute)."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return
    # Runs while the request is authenticated, before its tenant scope exists.
    with scopes_disabled():
        ApiKey.objects.filter(pk=api_key.pk, tenant_id=api_key.tenant_id).update(last_used_at=now)
    api_key.last_used_at = now


PROVIDER_KEYS = ("deepgram_api_key", "assemblyai_api_key")


def tenant_provider_keys_set(*, tenant: Tenant, keys: dict[str, str]) -> Tenant:
    """Store the tenant's own stream-mode provider keys (encrypted): a key given replaces the
    stored one, an empty one removes it (the platform's key is used again), one left out stays."""
    for name in PROVIDER_KEYS:
        if name in keys:
            getattr(tenant, f"set_{name}")(keys[name].strip())
    tenant.save(update_fields=[f"{name}_encrypted" for name in PROVIDER_KEYS])
    return tenant
