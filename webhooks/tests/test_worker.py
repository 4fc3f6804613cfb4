"""Deliveries by real Celery worker processes: the whole path, and a worker killed mid-delivery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django_scopes import scopes_disabled

from devtools.testing import (
    CeleryWorker,
    fake_groq_env,
    start_test_worker,
    stop_celery_worker,
)
from webhooks import services
from webhooks.models import Delivery
from webhooks.tests.conftest import finished_call, subscribe

WORKER_SETTINGS = {
    "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.2",
    "WEBHOOK_RETRY_JITTER": "0",
}


@pytest.fixture
def start_worker(transactional_db, fake_groq, media_root: Path, tmp_path: Path) -> Iterator:
    """Start worker processes with the webhook settings of these tests; tasks queued by the
    test go to the newest one. All are stopped at the end."""
    from config.celery import app

    started: list[CeleryWorker] = []
    option = f"{app.namespace}_TASK_DEFAULT_QUEUE"
    previous = app.conf.task_default_queue

    def start() -> CeleryWorker:
        worker = start_test_worker(
            log_path=tmp_path / f"worker{len(started)}.log",
            media_root=media_root,
            extra_env={**WORKER_SETTINGS, **fake_groq_env(fake_groq)},
        )
        started.append(worker)
        app.conf.update({option: worker.queue})
        return worker

    yield start
    app.conf.update({option: previous})
    for worker in started:
        stop_celery_worker(worker)


def wait_for(condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_a_worker_delivers_call_ended_after_a_500_and_call_analyzed(
    number_a, receiver, start_worker, settings
):
    worker = start_worker()
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    subscribe(number_a.tenant, receiver.url, ["call.ended", "call.analyzed"])
    receiver.answer_with(500)

    finished_call(number_a)

    def both_delivered() -> bool:
        return {r.json["type"] for r in receiver.delivered()} == {"call.ended", "call.analyzed"}

    wait_for(both_delivered, what=f"both events; worker log:\n{worker.log()}")
    ended = [r for r in receiver.received if r.json["type"] == "call.ended"]
    assert len(ended) == 2 and ended[0].webhook_id == ended[1].webhook_id
    analyzed = next(r.json for r in receiver.delivered() if r.json["type"] == "call.analyzed")
    assert analyzed["data"]["analysis"]["status"] == "done"


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_loses_nothing(number_a, receiver, start_worker, settings):
    first = start_worker()
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_SWEEP_SECONDS = 0
    subscribe(number_a.tenant, receiver.url, ["call.ended"])
    receiver.hang_seconds = 60
    receiver.answer_with("hang")

    finished_call(number_a)
    wait_for(receiver.requests_seen.is_set, what=f"the first attempt; log:\n{first.log()}")
    first.process.kill()  # SIGKILL while the request is in flight: nothing is recorded
    first.process.wait(timeout=10)
    with scopes_disabled():
        delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.PENDING and delivery.locked_until is not None

    second = start_worker()
    # The dead worker's claim runs out (one attempt's timeout and a margin); the sweep, as beat
    # runs it, queues the delivery again for the live worker.
    wait_for(
        lambda: _requeued(delivery),
        timeout=services.LEASE_MARGIN_SECONDS + 10,
        what="the claim to run out",
    )
    wait_for(lambda: receiver.delivered(), what=f"the delivery; log:\n{second.log()}")
    [got] = receiver.delivered()
    assert got.webhook_id == delivery.message_id
    assert len(receiver.received) == 2
    # the worker records the outcome once the receiver has answered
    wait_for(lambda: _status(delivery) == Delivery.Status.SUCCEEDED, what="the outcome")


def _status(delivery: Delivery) -> str:
    with scopes_disabled():
        return Delivery.objects.get(id=delivery.id).status


def _requeued(delivery: Delivery) -> bool:
    with scopes_disabled():
        return services.deliveries_requeue_due() > 0
