"""Writes for tenants, numbers, API keys and rate limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django_scopes import scopes_disabled

from tenants import apikeys
from tenants.models import ApiKey, Membership, PhoneNumber, Role, Tenant

# last_used_at is written at most this often per key, so API traffic is not a write per request.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


def membership_grant(*, user, tenant: Tenant, role: str = Role.VIEWER) -> Membership:
    """Give `user` `role` in `tenant` (or change the role they have)."""
    membership, _ = Membership.objects.update_or_create(
        user=user, tenant=tenant, defaults={"role": role}
    )
    return membership


def phone_number_create(
    *, tenant: Tenant, number: str, assistant=None, label: str = "", active: bool = True
) -> PhoneNumber:
    _check_assistant_tenant(tenant=tenant, assistant=assistant)
    phone_number = PhoneNumber(
        tenant=tenant, number=number, assistant=assistant, label=label, active=active
    )
    phone_number.full_clean()
    phone_number.save()
    return phone_number


def phone_number_update(*, phone_number: PhoneNumber, **changes: Any) -> PhoneNumber:
    """Change `number`, `assistant`, `label` or `active`; validated like a new number."""
    allowed = {"number", "assistant", "label", "active"}
    if unknown := set(changes) - allowed:
        raise ValueError(f"cannot change {sorted(unknown)}")
    if "assistant" in changes:
        _check_assistant_tenant(tenant=phone_number.tenant, assistant=changes["assistant"])
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
