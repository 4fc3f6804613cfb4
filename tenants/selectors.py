"""Reads of tenants and numbers made before any tenant scope exists (webhook entry points)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django_scopes import scopes_disabled

from tenants.models import PhoneNumber
from tenants.phone import normalize_e164


def unscoped_phone_number_by_dialled(number: str) -> PhoneNumber | None:
    """The PhoneNumber a caller dialled (Twilio's `To`), across all tenants, or None.

    A named bypass of tenant scoping: the dialled number is what tells us the tenant.
    """
    try:
        normalized = normalize_e164(number)
    except ValidationError:
        return None
    with scopes_disabled():
        return (
            PhoneNumber.objects.select_related("tenant", "assistant")
            .filter(number=normalized)
            .first()
        )
