"""Deliveries to a real receiver on loopback: signatures, retries, dead letters, isolation."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction
from django_scopes import scope, scopes_disabled
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from calls import services as call_services
from webhooks import services
from webhooks.models import Attempt, Delivery, Event
from webhooks.tests.conftest import finished_call, run_deliveries, subscribe

pytestmark = pytest.mark.usefixtures("loopback_allowed")


def test_call_ended_arrives_signed_and_the_librarys_verifier_accepts_it(number_a, receiver):
    endpoint, secret = subscribe(number_a.tenant, receiver.url, ["call.ended"])

    call = finished_call(number_a)
    assert run_deliveries() == ["succeeded"]

    [got] = receiver.received
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "call.ended"
    data = payload["data"]
    assert data["call"]["id"] == str(call.id)
    assert data["call"]["outcome"] == "completed"
    assert [t["text"] for t in data["transcript"]] == [
        "I need a plumber tomorrow",
        "We can come tomorrow at nine.",
    ]
    # 1000 tokens in and 200 out at llama-3.3-70b's list price, and a started minute of gather
    assert data["cost"]["llm"] == "0.000748"
    assert data["cost"]["currency"] == "USD"
    assert got.headers["content-type"] == "application/json"


def test_a_forged_or_other_secret_fails_the_librarys_verifier(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    finished_call(number_a)
    run_deliveries()
    [got] = receiver.received
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(got.body, got.headers)


def test_only_the_events_subscribed_to_are_sent(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.started"])
    finished_call(number_a)
    run_deliveries()
    assert [r.json["type"] for r in receiver.received] == ["call.started"]


def test_a_receiver_answering_500_gets_the_event_again_with_the_same_webhook_id(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    receiver.answer_with(500, 503)
    finished_call(number_a)

    assert run_deliveries() == ["retry", "retry", "succeeded"]
    ids = {r.webhook_id for r in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    with scopes_disabled():
        delivery = Delivery.objects.get()
        log = list(delivery.attempt_log.values_list("number", "status_code"))
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert log == [(1, 500), (2, 503), (3, 200)]


def test_a_hanging_receiver_times_out_and_the_event_arrives_once_it_answers(
    number_a, receiver, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.hang_seconds = 3
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    receiver.answer_with("hang")
    finished_call(number_a)

    assert run_deliveries() == ["retry", "succeeded"]
    assert len({r.webhook_id for r in receiver.received}) == 1
    with scopes_disabled():
        first = Attempt.objects.order_by("number").first()
    assert first.status_code is None and "no answer within 0.5 s" in first.error
    assert 400 <= first.latency_ms < 2000


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    receiver.stop()
    finished_call(number_a)
    assert run_deliveries(rounds=1) == ["retry"]

    receiver.start()  # the same port
    assert run_deliveries() == ["succeeded"]
    [got] = receiver.received
    with scopes_disabled():
        delivery = Delivery.objects.get()
        first_error = delivery.attempt_log.first().error
    assert got.webhook_id == delivery.message_id
    assert "ConnectError" in first_error


def test_a_delivery_is_given_up_after_the_schedule_and_resent_with_the_same_id(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    receiver.answer_with(500, 500, 500, 500)  # the first attempt and three retries
    finished_call(number_a)

    assert run_deliveries() == ["retry", "retry", "retry", "failed"]
    with scopes_disabled():
        delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED and delivery.last_status_code == 500

    with scope(tenant=number_a.tenant_id):
        assert services.deliveries_resend(deliveries=[delivery]) == 1
    assert run_deliveries() == ["succeeded"]
    assert {r.webhook_id for r in receiver.received} == {delivery.message_id}
    with scopes_disabled():
        assert Attempt.objects.filter(delivery=delivery).count() == 5


def test_an_endpoint_that_keeps_failing_is_switched_off_and_its_owners_told(
    number_a, receiver, alice, bob, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    settings.WEBHOOK_DISABLE_AFTER = 2
    endpoint, _ = subscribe(number_a.tenant, receiver.url, ["call.ended"])
    receiver.answer_with(500, 500)
    for sid in ("CA" + "1" * 32, "CA" + "2" * 32):
        finished_call(number_a, sid=sid)
        with django_capture_on_commit_callbacks(execute=True):
            run_deliveries()

    with scopes_disabled():
        endpoint.refresh_from_db()
    assert not endpoint.enabled and "2 deliveries in a row" in endpoint.disabled_reason
    [notice] = mail.outbox
    assert notice.to == ["alice@example.com"]  # the owner; bob is a viewer
    assert receiver.url in notice.body

    finished_call(number_a, sid="CA" + "3" * 32)
    assert run_deliveries() == []  # switched off: nothing more is written for it
    assert len(receiver.received) == 2


def test_a_disabled_endpoint_receives_nothing(number_a, receiver):
    endpoint, _ = subscribe(number_a.tenant, receiver.url, enabled=False)
    finished_call(number_a)
    assert run_deliveries() == []
    with scopes_disabled():
        assert not Delivery.objects.exists() and not Event.objects.exists()
    assert receiver.received == []


def test_an_endpoint_switched_off_after_the_event_was_written_receives_nothing(number_a, receiver):
    endpoint, _ = subscribe(number_a.tenant, receiver.url, ["call.ended"])
    finished_call(number_a)
    with scope(tenant=number_a.tenant_id):
        services.endpoint_enable(endpoint=endpoint, enabled=False)
    assert run_deliveries() == ["failed"]
    assert receiver.received == []
    with scopes_disabled():
        assert Delivery.objects.get().last_error == "the endpoint is disabled"


def test_another_tenants_endpoint_never_receives_our_events(number_a, number_b, receiver):
    other = type(receiver)().start()
    try:
        subscribe(number_a.tenant, receiver.url)
        subscribe(number_b.tenant, other.url)
        finished_call(number_a)
        run_deliveries()
        assert other.received == []
        assert {r.json["data"]["call"]["to"] for r in receiver.received} == {number_a.number}

        finished_call(number_b, sid="CA" + "8" * 32)
        run_deliveries()
        assert {r.json["data"]["call"]["to"] for r in other.received} == {number_b.number}
        assert number_b.number not in {r.json["data"]["call"]["to"] for r in receiver.received}
    finally:
        other.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hooks",  # loopback, not allowed here
        "http://10.1.2.3/hooks",  # private
        "http://169.254.169.254/latest/meta-data/",  # link-local (cloud metadata)
        "http://localhost:{port}/hooks",  # a name that resolves to loopback
        "ftp://example.com/hooks",
    ],
)
def test_deliveries_to_the_platforms_own_networks_are_refused_at_send_time(
    number_a, receiver, settings, url
):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    subscribe(number_a.tenant, url.format(port=receiver.port), ["call.ended"])
    finished_call(number_a)

    assert run_deliveries() == ["failed"]  # refused at once: retrying cannot help
    assert receiver.received == []
    with scopes_disabled():
        delivery = Delivery.objects.get()
    assert delivery.last_error.startswith("refused:")


def test_a_rotated_secret_signs_beside_the_new_one_until_the_overlap_ends(number_a, receiver):
    endpoint, old = subscribe(number_a.tenant, receiver.url, ["call.ended", "call.started"])
    with scope(tenant=number_a.tenant_id):
        new = services.endpoint_rotate_secret(endpoint=endpoint, overlap_hours=1)
    finished_call(number_a)
    run_deliveries()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)

    with scope(tenant=number_a.tenant_id):
        newest = services.endpoint_rotate_secret(endpoint=endpoint, overlap_hours=0)
    finished_call(number_a, sid="CA" + "9" * 32)
    run_deliveries()
    got = receiver.received[-1]
    Webhook(newest).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(got.body, got.headers)


def test_the_event_is_written_with_the_change_and_rolled_back_with_it(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    with scope(tenant=number_a.tenant_id):
        call, _ = call_services.call_start(
            phone_number=number_a, call_sid="CA" + "5" * 32, from_number="+1555", to_number="+1"
        )
        with pytest.raises(RuntimeError), transaction.atomic():
            call_services.call_finish(call=call)
            assert Event.objects.filter(type="call.ended").count() == 1
            raise RuntimeError("the change fails after the event was written")
        assert not Event.objects.filter(type="call.ended").exists()
        assert not Delivery.objects.exists()


def test_started_and_transferred_are_sent_once(number_a, receiver):
    subscribe(number_a.tenant, receiver.url, ["call.started", "call.transferred"])
    with scope(tenant=number_a.tenant_id):
        call, _ = call_services.call_start(
            phone_number=number_a, call_sid="CA" + "4" * 32, from_number="+1555", to_number="+1"
        )
        call_services.call_start(  # Twilio retries the voice webhook
            phone_number=number_a, call_sid="CA" + "4" * 32, from_number="+1555", to_number="+1"
        )
        for _ in range(2):
            call_services.call_set_outcome(call=call, outcome="transferred")
    run_deliveries()
    by_type = {r.json["type"]: r.json["data"] for r in receiver.received}
    assert len(receiver.received) == 2
    assert set(by_type) == {"call.started", "call.transferred"}
    assert by_type["call.transferred"]["transfer_number"] == "+15005550001"


def test_the_delivery_is_queued_after_commit_and_the_sweep_finds_lost_ones(
    number_a, receiver, django_capture_on_commit_callbacks
):
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        finished_call(number_a)
    # the delivery is queued once the call's transaction commits
    delivering = [c for c in queued if getattr(c, "args", ())[:1] == (services.DELIVER_TASK,)]
    assert len(delivering) == 1
    with scopes_disabled():
        assert services.deliveries_requeue_due() == 1  # its task lost: queued again
        Delivery.objects.update(status=Delivery.Status.SUCCEEDED)
        assert services.deliveries_requeue_due() == 0
