"""Call events for the live dashboard, published to the tenant's and the staff groups.

Publishing never makes a call wait, nor fails it: `publish()` and `apublish()` put the event on a
bounded queue of the process and return. One thread per process, with its own event loop and a
channel layer connection pool of its own (`EVENTS_REDIS_CONNECTIONS`), sends what has queued up
in batches: a batch gathers for `EVENTS_BATCH_MS` after its first event, and its events go to each
group as one message (`call.events`), so a thousand events a second cost a few Redis round trips,
not two each. (Sending every event from the thread that made it opened a Redis connection per
event loop, and past a few hundred calls the pool ran out: events were lost.) An event that cannot be delivered (the queue full, Redis down after a
retry, the process stopping with events still queued) is counted in `/metrics`
(`voice_events_lost_total{reason}`), not only logged.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import time
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from core import metrics

logger = logging.getLogger(__name__)

STAFF_GROUP = "calls.staff"
# Retry once after this long when a send fails (Redis restarting), then count the batch lost.
RETRY_SECONDS = 0.5
# How long a stopping process waits for the events still queued.
DRAIN_SECONDS = 5.0


def tenant_group(tenant_id: object) -> str:
    return f"calls.tenant.{tenant_id}"


def event_payload(kind: str, *, call: Any, **data: Any) -> dict:
    return {
        "type": "call.event",  # the consumer's handler: call_event()
        "event": kind,
        "tenant": str(call.tenant_id) if call.tenant_id else None,
        "call": str(call.id),
        "call_sid": call.call_sid,
        "at": timezone.now().isoformat(),
        "data": data,
    }


def batch_message(events: list[dict]) -> dict:
    """Several events for one group, as one channel-layer message."""
    return {"type": "call.events", "events": events}


def unbatch(message: dict) -> list[dict]:
    """The events in a message received from a group (one, or a batch's)."""
    return message["events"] if message.get("type") == "call.events" else [message]


class Publisher:
    """The process' event queue and the thread that sends it."""

    _STOP = object()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, message: dict) -> None:
        """Queue `message` for its groups; count it lost when the queue is full."""
        events = self._running()
        try:
            events.put_nowait(message)
        except queue.Full:
            metrics.EVENTS_LOST.labels(reason="queue_full").inc()
            logger.warning("call event lost: the queue is full", extra={"event": message["event"]})

    def _running(self) -> queue.Queue:
        """The queue, with its thread started in this process (again after a fork)."""
        if self._pid == os.getpid() and self._queue is not None:
            return self._queue
        with self._lock:
            if self._pid != os.getpid() or self._queue is None:
                self._queue = queue.Queue(maxsize=settings.EVENTS_QUEUE_SIZE)
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="call-events", daemon=True
                )
                self._thread.start()
                self._pid = os.getpid()
        return self._queue

    def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Send what is queued and stop the thread (the process is stopping)."""
        with self._lock:
            events, thread = self._queue, self._thread
            if events is None or thread is None or self._pid != os.getpid():
                return
            self._queue = self._thread = None
        try:
            events.put(self._STOP, timeout=timeout)
        except queue.Full:
            pass
        thread.join(timeout)
        left = events.qsize()
        if left:
            metrics.EVENTS_LOST.labels(reason="shutdown").inc(left)

    def _run(self, events: queue.Queue) -> None:
        loop = asyncio.new_event_loop()
        try:
            config, layer = _layer_config(), _own_layer()
            full = False
            while True:
                batch = [events.get()]
                # The batch gathers while this thread sleeps: waiting on the queue instead would
                # wake it (and hand the interpreter over) for every event. After a full batch the
                # queue has more at once.
                if not full and batch[-1] is not self._STOP and settings.EVENTS_BATCH_MS > 0:
                    time.sleep(settings.EVENTS_BATCH_MS / 1000)
                while len(batch) < settings.EVENTS_BATCH_SIZE and batch[-1] is not self._STOP:
                    try:
                        batch.append(events.get_nowait())
                    except queue.Empty:
                        break
                full = len(batch) >= settings.EVENTS_BATCH_SIZE
                stop = self._STOP in batch
                batch = [message for message in batch if message is not self._STOP]
                if _layer_config() != config:  # settings changed (tests): a new layer
                    config, layer = _layer_config(), _own_layer()
                if batch and layer is not None:
                    loop.run_until_complete(_send(layer, batch))
                if stop:
                    if layer is not None and hasattr(layer, "close_pools"):
                        loop.run_until_complete(layer.close_pools())
                    return
        finally:
            loop.close()


def _layer_config() -> dict | None:
    return settings.CHANNEL_LAYERS.get(DEFAULT_CHANNEL_LAYER)


def _own_layer():
    """A channel layer instance for the publishing thread only, its Redis pool sized."""
    config = _layer_config()
    if not config:
        return None
    options = dict(config.get("CONFIG", {}))
    if "hosts" in options and config["BACKEND"].startswith("channels_redis."):
        size = settings.EVENTS_REDIS_CONNECTIONS
        options["hosts"] = [
            {"address": host, "max_connections": size} if isinstance(host, str) else host
            for host in options["hosts"]
        ]
    return import_string(config["BACKEND"])(**options)


def _groups(batch: list[dict]) -> dict[str, list[dict]]:
    """Each group and its events, in the order they were published."""
    groups: dict[str, list[dict]] = {}
    for message in batch:
        if message["tenant"]:
            groups.setdefault(tenant_group(message["tenant"]), []).append(message)
        groups.setdefault(STAFF_GROUP, []).append(message)
    return groups


async def _listened(layer, groups: list[str]) -> set[str]:
    """Those of `groups` that someone listens to (a dashboard's channel has joined), in one
    round trip per Redis host; all of them where the layer cannot tell (not Redis). A send to a
    group costs two round trips before it finds out that nobody is there, and most tenants'
    groups have nobody there most of the time."""
    if not (hasattr(layer, "_group_key") and hasattr(layer, "consistent_hash")):
        return set(groups)
    by_host: dict[int, list[str]] = {}
    for group in groups:
        by_host.setdefault(layer.consistent_hash(group), []).append(group)
    listened: set[str] = set()
    for index, names in by_host.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for group in names:
            pipe.zcard(layer._group_key(group))
        counts = await pipe.execute()
        listened.update(group for group, count in zip(names, counts, strict=True) if count)
    return listened


async def _send(layer, batch: list[dict]) -> None:
    lost: set[int] = set()
    groups = _groups(batch)
    try:
        listened = await _listened(layer, list(groups))
    except Exception:  # cannot tell: each group's send below retries, and counts what it loses
        listened = set(groups)
    for group, group_events in groups.items():
        if group not in listened:
            continue
        message = group_events[0] if len(group_events) == 1 else batch_message(group_events)
        for attempt in range(2):
            try:
                await layer.group_send(group, message)
                break
            except Exception:
                if attempt == 0:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                logger.warning("could not publish call events", exc_info=True)
                lost.update(id(event) for event in group_events)
    if lost:
        metrics.EVENTS_LOST.labels(reason="send_failed").inc(len(lost))
    metrics.EVENTS_PUBLISHED.inc(len(batch) - len(lost))


publisher = Publisher()
atexit.register(publisher.drain)


async def apublish(kind: str, *, call: Any, **data: Any) -> None:
    """`publish()` for coroutines (it never waits either)."""
    publish(kind, call=call, **data)


def publish(kind: str, *, call: Any, **data: Any) -> None:
    """Publish `kind` (started, turn, interrupted, ended, rejected, error) for `call`."""
    try:
        publisher.submit(event_payload(kind, call=call, **data))
    except Exception:
        metrics.EVENTS_LOST.labels(reason="error").inc()
        logger.warning("could not publish call event", extra={"event": kind}, exc_info=True)
