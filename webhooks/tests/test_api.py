"""/api/v1/webhook-endpoints/, -deliveries/ and -events/: the tenant's own, and nobody else's."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled
from standardwebhooks.webhooks import Webhook

from webhooks.models import Delivery, Endpoint
from webhooks.tests.conftest import finished_call, run_deliveries, subscribe

BASE = "/api/v1/webhook-endpoints/"


def test_an_owner_adds_an_endpoint_and_gets_its_secret_once(api, key_a, number_a):
    answer = api(key=key_a).post(
        BASE,
        {"url": "https://crm.example.com/hooks", "events": ["call.ended", "call.ended"]},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["call.ended"]
    assert answer["Cache-Control"] == "no-store"
    listed = api(key=key_a).get(BASE).json()["results"]
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]
    with scopes_disabled():
        assert Endpoint.objects.get(id=body["id"]).secret == body["secret"]


@pytest.mark.parametrize(
    "payload",
    [
        {"url": "ftp://example.com/x", "events": ["call.ended"]},
        {"url": "not a url", "events": ["call.ended"]},
        {"url": "https://example.com/x", "events": []},
        {"url": "https://example.com/x", "events": ["call.exploded"]},
        {"url": "https://example.com/x"},
    ],
)
def test_bad_endpoints_get_a_clear_400(api, key_a, payload):
    answer = api(key=key_a).post(BASE, payload, format="json")
    assert answer.status_code == 400
    with scopes_disabled():
        assert not Endpoint.objects.exists()


def test_a_viewer_reads_but_neither_writes_nor_sees_secrets(api, bob, tenant_a):
    endpoint, _ = subscribe(tenant_a, "https://crm.example.com/hooks")
    client = api(bob)
    assert client.get(f"{BASE}{endpoint.id}/").status_code == 200
    assert client.get(f"{BASE}{endpoint.id}/secret/").status_code == 403
    assert client.post(f"{BASE}{endpoint.id}/rotate-secret/", {}).status_code == 403
    assert client.patch(f"{BASE}{endpoint.id}/", {"enabled": False}).status_code == 403


def test_rotating_returns_the_new_secret_and_keeps_the_old_for_the_overlap(api, alice, tenant_a):
    endpoint, old = subscribe(tenant_a, "https://crm.example.com/hooks")
    answer = api(alice).post(
        f"{BASE}{endpoint.id}/rotate-secret/", {"overlap_hours": 2}, format="json"
    )
    assert answer.status_code == 200
    new = answer.json()["secret"]
    with scopes_disabled():
        endpoint.refresh_from_db()
    assert endpoint.secrets_in_use() == [new, old]
    assert api(alice).get(f"{BASE}{endpoint.id}/secret/").json()["secret"] == new


def test_switching_an_endpoint_on_again_forgets_its_failures(api, alice, tenant_a):
    endpoint, _ = subscribe(tenant_a, "https://crm.example.com/hooks")
    with scopes_disabled():
        Endpoint.objects.filter(id=endpoint.id).update(
            enabled=False, failures_in_a_row=5, disabled_reason="Switched off"
        )
    answer = api(alice).patch(f"{BASE}{endpoint.id}/", {"enabled": True}, format="json")
    assert answer.status_code == 200
    assert answer.json()["enabled"] is True and answer.json()["failures_in_a_row"] == 0


def test_an_outsider_gets_404_for_everything_of_ours(
    api, charlie, key_b, tenant_a, number_a, receiver, loopback_allowed
):
    endpoint, _ = subscribe(tenant_a, receiver.url, ["call.ended"])
    finished_call(number_a)
    with scopes_disabled():
        delivery = Delivery.objects.get()
        event_id = delivery.event_id
    for client in (api(charlie), api(key=key_b)):
        assert client.get(f"{BASE}{endpoint.id}/").status_code == 404
        assert client.get(f"{BASE}{endpoint.id}/secret/").status_code == 404
        assert client.post(f"{BASE}{endpoint.id}/rotate-secret/", {}).status_code == 404
        assert client.patch(f"{BASE}{endpoint.id}/", {"enabled": False}).status_code == 404
        assert client.delete(f"{BASE}{endpoint.id}/").status_code == 404
        assert client.get(f"/api/v1/webhook-deliveries/{delivery.id}/").status_code == 404
        assert client.post(f"/api/v1/webhook-deliveries/{delivery.id}/resend/").status_code == 404
        answer = client.post(
            "/api/v1/webhook-deliveries/resend/", {"ids": [str(delivery.id)]}, format="json"
        )
        assert answer.status_code == 404
        assert client.get(f"/api/v1/webhook-events/{event_id}/").status_code == 404
        assert client.get(BASE).json()["results"] == []
        assert client.get("/api/v1/webhook-deliveries/").json()["results"] == []
    with scopes_disabled():
        assert Endpoint.objects.get(id=endpoint.id).enabled


def test_deliveries_are_listed_with_their_attempts_and_resent(
    api, alice, tenant_a, number_a, receiver, loopback_allowed
):
    endpoint, secret = subscribe(tenant_a, receiver.url, ["call.ended"])
    receiver.answer_with(500, 500, 500, 500)
    finished_call(number_a)
    run_deliveries()
    client = api(alice)
    [listed] = client.get("/api/v1/webhook-deliveries/?status=failed").json()["results"]
    assert listed["event_type"] == "call.ended" and listed["attempts"] == 4
    detail = client.get(f"/api/v1/webhook-deliveries/{listed['id']}/").json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [500] * 4
    assert detail["attempt_log"][0]["response_excerpt"] == "answered 500"

    answer = client.post(
        "/api/v1/webhook-deliveries/resend/", {"ids": [listed["id"]]}, format="json"
    )
    assert answer.status_code == 202
    run_deliveries()
    got = receiver.delivered()[0]
    Webhook(secret).verify(got.body, got.headers)
    assert got.body.decode() == detail["body"]
    assert client.get(f"/api/v1/webhook-deliveries/{listed['id']}/").json()["status"] == (
        "succeeded"
    )


def test_events_show_what_was_sent(api, alice, tenant_a, number_a):
    subscribe(tenant_a, "https://crm.example.com/hooks", ["call.started", "call.ended"])
    call = finished_call(number_a)
    events = api(alice).get(f"/api/v1/webhook-events/?call={call.id}").json()["results"]
    assert sorted(e["type"] for e in events) == ["call.ended", "call.started"]
    ended = next(e for e in events if e["type"] == "call.ended")
    assert ended["data"]["call"]["id"] == str(call.id) and "cost" in ended["data"]


def test_the_openapi_schema_documents_the_event_payloads(api, alice):
    schema = api(alice).get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert {"CallEndedData", "CallAnalyzedData", "Cost", "TranscriptTurn"} <= set(components)
    assert "/api/v1/webhook-deliveries/{id}/resend/" in schema["paths"]
