"""Reads of outbound calls and campaigns. `unscoped_*` run before a tenant scope exists."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from django.db.models import Count, F, Q
from django_scopes import scopes_disabled

from campaigns.models import Campaign, Contact, OutboundCall
from insights.models import CallReport


def unscoped_outbound_by_call_id(call_id: str) -> OutboundCall | None:
    """The OutboundCall of the Call named in a webhook's URL, across tenants, or None.

    A named bypass of tenant scoping for Twilio's webhooks: the call tells us the tenant, whose
    token then checks the signature and whose scope the view enters.
    """
    try:
        parsed = uuid.UUID(call_id)
    except (TypeError, ValueError, AttributeError):
        return None
    with scopes_disabled():
        return OutboundCall.objects.select_related("tenant", "call").filter(call_id=parsed).first()


def campaign_progress(*, campaign: Campaign) -> dict[str, int]:
    """Contacts by where they stand: the figures the dashboard and the API show live."""
    done = Q(state=Contact.State.DONE)
    counts = Contact.objects.filter(tenant=campaign.tenant, campaign=campaign).aggregate(
        total=Count("id"),
        pending=Count("id", filter=Q(state=Contact.State.PENDING)),
        in_call=Count("id", filter=Q(state=Contact.State.DIALLING)),
        dialled=Count("id", filter=Q(attempts__gt=0)),
        answered=Count("id", filter=done & Q(outcome=Contact.Outcome.ANSWERED)),
        voicemail=Count("id", filter=done & Q(outcome=Contact.Outcome.VOICEMAIL)),
        failed=Count("id", filter=done & Q(outcome__in=Contact.RETRIED)),
        do_not_call=Count("id", filter=done & Q(outcome=Contact.Outcome.DO_NOT_CALL)),
        canceled=Count("id", filter=done & Q(outcome=Contact.Outcome.CANCELED)),
        completed=Count("id", filter=done),
    )
    return counts


def campaign_results(*, campaign: Campaign) -> tuple[list[str], Iterator[dict]]:
    """(the contacts' variable names, one row per contact with its outcome and last call)."""
    contacts = Contact.objects.filter(tenant=campaign.tenant, campaign=campaign)
    names: set[str] = set()
    for variables in contacts.values_list("variables", flat=True).iterator():
        names.update(variables)
    rows = (
        contacts.order_by("number")
        .values(
            "number",
            "state",
            "outcome",
            "attempts",
            "variables",
            answered_by=F("last_call__outbound__answered_by"),
            voicemail_left=F("last_call__outbound__voicemail_left"),
            call_id=F("last_call_id"),
            call_status=F("last_call__status"),
            duration=F("last_call__duration_seconds"),
            success=F("last_call__report__success"),
            sentiment=F("last_call__report__sentiment"),
            summary=F("last_call__report__summary"),
            data=F("last_call__report__data"),
        )
        .iterator()
    )
    return sorted(names), rows


def campaign_data_fields(*, campaign: Campaign) -> list[str]:
    """The fields the post-call analysis extracted from the campaign's calls (the results
    CSV gets a column for each)."""
    reports = CallReport.objects.filter(
        tenant=campaign.tenant, call__outbound__contact__campaign=campaign
    )
    names: set[str] = set()
    for data in reports.values_list("data", flat=True).iterator():
        if isinstance(data, dict):
            names.update(data)
    return sorted(names)


def unscoped_campaigns_with_progress(*, tenant_ids: list | None, limit: int = 50) -> list[dict]:
    """The newest campaigns of `tenant_ids` (None: every tenant's, for platform staff), each
    with its live progress: the dashboard's campaigns page.

    A named bypass of tenant scoping: the dashboard's access rules chose the tenants."""
    with scopes_disabled():
        campaigns = Campaign.objects.select_related("tenant").order_by("-created_at")
        if tenant_ids is not None:
            campaigns = campaigns.filter(tenant_id__in=tenant_ids)
        return [
            {
                "id": str(campaign.id),
                "name": campaign.name,
                "tenant": campaign.tenant.name,
                "status": campaign.status,
                "progress": campaign_progress(campaign=campaign),
            }
            for campaign in campaigns[:limit]
        ]
