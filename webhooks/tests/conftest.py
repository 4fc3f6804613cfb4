from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_scopes import scope, scopes_disabled

from calls import services as call_services
from calls.models import Call, Turn
from webhooks import services
from webhooks.models import Delivery
from webhooks.tests.receiver import Receiver

ALL_EVENTS = ["call.started", "call.ended", "call.analyzed", "call.transferred"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def loopback_allowed(settings) -> None:
    """Receivers of these tests are on loopback, which the platform refuses by default."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 0.0, 0.0]
    settings.WEBHOOK_RETRY_JITTER = 0.0
    settings.WEBHOOK_SWEEP_SECONDS = 0.0


def subscribe(tenant, url: str, events=None, **fields):
    with scope(tenant=tenant.id):
        return services.endpoint_create(
            tenant=tenant, url=url, events=events or ALL_EVENTS, **fields
        )


def finished_call(number, sid: str = "CA" + "7" * 32) -> Call:
    """A call to `number` with one exchange, ended (as a relay session closing would)."""
    with scope(tenant=number.tenant_id):
        call, _ = call_services.call_start(
            phone_number=number, call_sid=sid, from_number="+15551230000", to_number=number.number
        )
        call_services.turn_add(call=call, role=Turn.Role.CALLER, text="I need a plumber tomorrow")
        call_services.turn_add(
            call=call,
            role=Turn.Role.ASSISTANT,
            text="We can come tomorrow at nine.",
            model_used="llama-3.3-70b-versatile",
            tokens_in=1000,
            tokens_out=200,
            source=Turn.Source.LLM,
        )
        call_services.call_finish(call=call)
    return call


def run_deliveries(rounds: int = 10) -> list[str]:
    """Send every due delivery in this process, as workers would, until none is left due
    (retries scheduled with no delay come due at once). Returns what each attempt did."""
    outcomes = []
    for _ in range(rounds):
        with scopes_disabled():
            due = list(
                Delivery.objects.filter(status=Delivery.Status.PENDING).values_list(
                    "id", "tenant_id"
                )
            )
        if not due:
            break
        for delivery_id, tenant_id in due:
            with scope(tenant=tenant_id):
                outcomes.append(
                    services.delivery_send(delivery_id=delivery_id, tenant_id=tenant_id)
                )
    return outcomes
