"""The live feed's publisher: bounded, batched, over the real Redis channel layer; every event
delivered under load, and the ones that cannot be are counted in /metrics."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from calls import events

pytestmark = pytest.mark.django_db


def _call(tenant_id) -> SimpleNamespace:
    """What an event needs of a call."""
    return SimpleNamespace(id=uuid.uuid4(), tenant_id=tenant_id, call_sid="CA" + uuid.uuid4().hex)


def _lost(reason: str) -> float:
    return REGISTRY.get_sample_value("voice_events_lost_total", {"reason": reason}) or 0.0


async def _listen(group: str):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return layer, channel


async def _receive_until(layer, channel, count: int, *, idle: float = 5.0) -> list[dict]:
    received: list[dict] = []
    while len(received) < count:
        try:
            message = await asyncio.wait_for(layer.receive(channel), idle)
        except TimeoutError:
            break
        received.extend(events.unbatch(message))
    return received


def test_every_event_arrives_when_many_threads_publish_at_once(tenant_a):
    threads, per_thread = 16, 250
    calls = [_call(tenant_a.id) for _ in range(threads)]
    lost_before = {r: _lost(r) for r in ("queue_full", "send_failed")}

    def publish_turns(call) -> None:
        for sequence in range(per_thread):
            events.publish("turn", call=call, turn={"sequence": sequence})

    async def scenario() -> list[dict]:
        layer, channel = await _listen(events.tenant_group(tenant_a.id))
        receiving = asyncio.create_task(_receive_until(layer, channel, threads * per_thread))
        workers = [threading.Thread(target=publish_turns, args=(call,)) for call in calls]
        for worker in workers:
            worker.start()
        for worker in workers:
            await asyncio.to_thread(worker.join)
        return await receiving

    received = asyncio.run(scenario())
    assert len(received) == threads * per_thread
    for call in calls:  # each call's events in the order they were published
        sequences = [m["data"]["turn"]["sequence"] for m in received if m["call"] == str(call.id)]
        assert sequences == list(range(per_thread))
    assert {r: _lost(r) for r in lost_before} == lost_before


def test_a_batch_reaches_each_tenant_with_only_its_own_events(tenant_a, tenant_b):
    ours, theirs = _call(tenant_a.id), _call(tenant_b.id)

    async def scenario():
        mine = await _listen(events.tenant_group(tenant_a.id))
        other = await _listen(events.tenant_group(tenant_b.id))
        staff = await _listen(events.STAFF_GROUP)
        for sequence in range(50):
            for call in (ours, theirs):
                events.publish("turn", call=call, turn={"sequence": sequence})
        return [await _receive_until(*listener, 100, idle=3) for listener in (mine, other, staff)]

    mine, other, staff = asyncio.run(scenario())
    assert {m["call"] for m in mine} == {str(ours.id)} and len(mine) == 50
    assert {m["call"] for m in other} == {str(theirs.id)} and len(other) == 50
    assert len(staff) == 100


def test_events_that_cannot_be_delivered_are_counted_in_metrics(settings, client):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},  # nothing listens: Redis is down
        }
    }
    settings.EVENTS_QUEUE_SIZE = 5
    settings.EVENTS_BATCH_MS = 0  # each batch sent as soon as its first event is taken
    publisher = events.Publisher()
    before = {r: _lost(r) for r in ("queue_full", "send_failed")}
    call = _call(None)
    for sequence in range(50):
        publisher.submit(events.event_payload("turn", call=call, turn={"sequence": sequence}))
        if sequence == 0:
            # The thread has taken the first event and is failing to send it.
            while publisher._queue.qsize():
                time.sleep(0.001)
    publisher.drain(timeout=20)
    assert _lost("queue_full") - before["queue_full"] == 44
    assert _lost("send_failed") - before["send_failed"] == 6
    body = client.get("/metrics").content.decode()
    assert 'voice_events_lost_total{reason="queue_full"}' in body
    assert 'voice_events_lost_total{reason="send_failed"}' in body


def test_a_dashboard_that_joins_gets_the_events_from_then_on(tenant_a):
    """Events for a group nobody listens to are not sent; whoever joins next gets the next ones
    (the listeners are looked up for every batch)."""
    before, after = _call(tenant_a.id), _call(tenant_a.id)
    events.publish("turn", call=before, turn={"sequence": 1})
    events.publisher.drain()

    async def scenario() -> list[dict]:
        layer, channel = await _listen(events.tenant_group(tenant_a.id))
        events.publish("turn", call=after, turn={"sequence": 2})
        return await _receive_until(layer, channel, 2, idle=2.0)

    received = asyncio.run(scenario())
    assert [m["call"] for m in received] == [str(after.id)]
