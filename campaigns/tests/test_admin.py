"""The campaigns' admin pages: Alice (owner of A) moves her campaigns, Charlie (admin of B) gets
404 on every page of tenant A's rows and cannot move them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from campaigns import services
from campaigns.models import Campaign, Contact, DoNotCall, OutboundCall, OutboundSettings

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(tenant_a, assistant_a, number_a):
    with scopes_disabled():
        campaign = Campaign.objects.create(
            tenant=tenant_a, name="Acme reminders", assistant=assistant_a, phone_number=number_a
        )
        contact = Contact.objects.create(tenant=tenant_a, campaign=campaign, number="+14155556001")
        outbound = services.outbound_prepare(
            tenant=tenant_a,
            assistant=assistant_a,
            phone_number=number_a,
            to=contact.number,
            variables={},
            contact=contact,
        )
        return {
            Campaign: campaign,
            Contact: contact,
            OutboundCall: outbound,
            DoNotCall: DoNotCall.objects.create(tenant=tenant_a, number="+14155556002"),
            OutboundSettings: OutboundSettings.objects.create(
                tenant=tenant_a, assistant=assistant_a
            ),
        }


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:campaigns_{model._meta.model_name}_{view}", args=args)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_outsider_gets_404_on_every_page_and_an_empty_list(charlie, alice, rows):
    outsider, owner = _client(charlie), _client(alice)
    for model, obj in rows.items():
        assert outsider.get(_url(model, "change", obj.pk)).status_code == 404, model
        assert str(obj.pk) not in outsider.get(_url(model, "changelist")).content.decode()
        assert owner.get(_url(model, "change", obj.pk)).status_code == 200, model


def test_the_owner_starts_a_campaign_and_an_outsider_cannot(charlie, alice, rows):
    campaign = rows[Campaign]
    action = {"action": "start_campaigns", "_selected_action": [str(campaign.pk)]}

    _client(charlie).post(_url(Campaign, "changelist"), action)
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
    _client(alice).post(_url(Campaign, "changelist"), action)
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING
