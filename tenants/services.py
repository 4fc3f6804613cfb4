"""Writes for tenants, numbers and rate limits."""

from __future__ import annotations

from django.db import transaction

from tenants.models import Membership, PhoneNumber, Role, Tenant


@transaction.atomic
def tenant_create(*, name: str, slug: str, timezone: str = "UTC") -> Tenant:
    tenant = Tenant(name=name, slug=slug, timezone=timezone)
    tenant.full_clean()
    tenant.save()
    return tenant


def membership_grant(*, user, tenant: Tenant, role: str = Role.VIEWER) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        user=user, tenant=tenant, defaults={"role": role}
    )
    return membership


def phone_number_create(
    *, tenant: Tenant, number: str, assistant=None, label: str = "", active: bool = True
) -> PhoneNumber:
    phone_number = PhoneNumber(
        tenant=tenant, number=number, assistant=assistant, label=label, active=active
    )
    phone_number.full_clean()
    phone_number.save()
    return phone_number
