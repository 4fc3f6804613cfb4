"""Another tenant's campaigns, contacts, outbound calls and do-not-call entries answer 404 on
every endpoint; Twilio's outbound webhooks need the right signature and the right call."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django_scopes import scopes_disabled

from calls.models import Call
from calls.transports.signatures import sign
from campaigns import services
from campaigns.models import Campaign, Contact, DoNotCall

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows_a(tenant_a, assistant_a, number_a):
    with scopes_disabled():
        campaign = Campaign.objects.create(
            tenant=tenant_a, name="Acme reminders", assistant=assistant_a, phone_number=number_a
        )
        contact = Contact.objects.create(tenant=tenant_a, campaign=campaign, number="+14155554001")
        entry = DoNotCall.objects.create(tenant=tenant_a, number="+14155554002")
        outbound = services.outbound_prepare(
            tenant=tenant_a,
            assistant=assistant_a,
            phone_number=number_a,
            to=contact.number,
            variables={},
            contact=contact,
        )
    return campaign, entry, outbound


def _outsider_requests(campaign, entry, outbound):
    base = "/api/v1"
    c = f"{base}/campaigns/{campaign.id}"
    return [
        ("get", f"{c}/"),
        ("patch", f"{c}/"),
        ("post", f"{c}/start/"),
        ("post", f"{c}/pause/"),
        ("post", f"{c}/resume/"),
        ("post", f"{c}/cancel/"),
        ("get", f"{c}/contacts/"),
        ("post", f"{c}/contacts/"),
        ("get", f"{c}/results/"),
        ("get", f"{base}/do-not-call/{entry.id}/"),
        ("delete", f"{base}/do-not-call/{entry.id}/"),
        ("get", f"{base}/outbound-calls/{outbound.id}/"),
    ]


@pytest.mark.parametrize("as_key", [True, False], ids=["api key", "session"])
def test_an_outsider_gets_404_on_every_endpoint(api, key_b, charlie, rows_a, as_key):
    client = api(key=key_b) if as_key else api(charlie)
    for method, url in _outsider_requests(*rows_a):
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
    for listing in ("campaigns", "do-not-call", "outbound-calls"):
        assert client.get(f"/api/v1/{listing}/").json()["results"] == []
    campaign, entry, _ = rows_a
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
        assert DoNotCall.objects.filter(pk=entry.pk).exists()


def test_an_outsider_cannot_create_a_campaign_with_our_assistant(
    api, key_b, assistant_a, number_a, number_b
):
    response = api(key=key_b).post(
        "/api/v1/campaigns/",
        {"name": "x", "assistant": str(assistant_a.id), "phone_number": str(number_b.id)},
        format="json",
    )
    assert response.status_code == 404


def test_the_owner_sees_and_moves_their_campaign(api, key_a, rows_a):
    campaign, _, _ = rows_a
    client = api(key=key_a)
    assert client.get(f"/api/v1/campaigns/{campaign.id}/").json()["progress"]["total"] == 1
    assert client.post(f"/api/v1/campaigns/{campaign.id}/start/").json()["status"] == "running"
    again = client.post(f"/api/v1/campaigns/{campaign.id}/start/")
    assert again.status_code == 400


def _post(path: str, params: dict, *, token: str | None = None) -> int:
    signature = sign(
        url=f"http://testserver{path}",
        params=params,
        auth_token=token or settings.TWILIO_AUTH_TOKEN,
    )
    return Client().post(path, params, headers={"X-Twilio-Signature": signature}).status_code


def test_outbound_webhooks_check_the_signature_and_the_call(rows_a):
    _, _, outbound = rows_a
    path = f"/twilio/outbound/status?call={outbound.call_id}"
    params = {"CallSid": "CA" + "7" * 32, "CallStatus": "busy", "To": "+14155554001"}

    assert _post(path, params, token="not the token") == 403
    assert _post("/twilio/outbound/status?call=not-a-uuid", params) == 204
    assert _post(path, params) == 204
    with scopes_disabled():
        call = Call.objects.get(pk=outbound.call_id)
    assert (call.call_sid, call.status) == (params["CallSid"], Call.Status.BUSY)
    # Another call's sid on this call's URL changes nothing.
    other = {**params, "CallSid": "CA" + "8" * 32, "CallStatus": "completed"}
    assert _post(path, other) == 204
    with scopes_disabled():
        assert Call.objects.get(pk=outbound.call_id).call_sid == params["CallSid"]
