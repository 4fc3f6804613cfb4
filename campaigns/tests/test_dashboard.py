"""The dashboard's campaigns page and its live progress: each viewer sees their own tenant's."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from campaigns.models import Campaign, Contact

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign_a(tenant_a, assistant_a, number_a) -> Campaign:
    with scopes_disabled():
        campaign = Campaign.objects.create(
            tenant=tenant_a, name="Acme reminders", assistant=assistant_a, phone_number=number_a
        )
        Contact.objects.create(
            tenant=tenant_a,
            campaign=campaign,
            number="+14155557001",
            attempts=1,
            state=Contact.State.DONE,
            outcome=Contact.Outcome.VOICEMAIL,
        )
        Contact.objects.create(tenant=tenant_a, campaign=campaign, number="+14155557002")
    return campaign


def test_a_member_sees_the_progress_of_their_campaigns(api, bob, campaign_a):
    page = api(bob).get("/dashboard/campaigns/")
    progress = api(bob).get("/dashboard/campaigns/progress/").json()["campaigns"]

    assert "Acme reminders" in page.content.decode()
    assert [c["name"] for c in progress] == ["Acme reminders"]
    assert (progress[0]["progress"]["total"], progress[0]["progress"]["voicemail"]) == (2, 1)
    assert progress[0]["progress"]["pending"] == 1


def test_an_outsider_sees_none_of_them(api, charlie, campaign_a, tenant_a):
    client = api(charlie)
    assert "Acme reminders" not in client.get("/dashboard/campaigns/").content.decode()
    assert client.get("/dashboard/campaigns/progress/").json()["campaigns"] == []
    named = f"/dashboard/campaigns/progress/?tenant={tenant_a.id}"
    assert client.get(named).status_code == 404


def test_platform_staff_see_every_tenants_campaigns(api, superuser, campaign_a):
    progress = api(superuser).get("/dashboard/campaigns/progress/").json()["campaigns"]
    assert [(c["name"], c["tenant"]) for c in progress] == [("Acme reminders", "Acme Plumbing")]


def test_an_anonymous_visitor_is_sent_to_the_login(api, campaign_a):
    response = api().get("/dashboard/campaigns/progress/")
    assert response.status_code == 302
    assert "/dashboard/login/" in response["Location"]
