"""Faults survived: Redis going away and coming back mid-call, the database going away.

Redis here is a real redis-server of the test's own, stopped and started again; the database
outage is a real connection failure (PostgreSQL on a closed port, or SQLite on a missing path).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.core.cache import cache
from django.db import connection
from django_scopes import scopes_disabled

from calls.events import tenant_group, unbatch
from calls.models import Call, Turn
from tenants.models import RateLimit

FAQ_QUESTION = "When are you open?"
FAQ_ANSWER = "We are open from eight to six, Monday to Friday."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server process of this test's own, on its own port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (apt-get install redis-server)"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisServer]:
    """Point the cache, rate limits and channel layer at a Redis this test can stop."""
    server = RedisServer()
    server.start()
    settings.REDIS_URL = server.url
    settings.REDIS_RETRY_SECONDS = 0.2
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [server.url]},
        }
    }
    channel_layers.backends = {}
    yield server
    server.stop()
    channel_layers.backends = {}


def _turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


def _events_for(group: str, action) -> list[dict]:
    """Run `action` while listening to `group` on the current channel layer."""

    async def listen() -> tuple[object, str]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        return layer, channel

    async def drain(layer, channel) -> list[dict]:
        messages = []
        while True:
            try:
                messages.extend(unbatch(await asyncio.wait_for(layer.receive(channel), 1.0)))
            except TimeoutError:
                return messages

    layer, channel = async_to_sync(listen)()
    action()
    return async_to_sync(drain)(layer, channel)


@pytest.mark.django_db(transaction=True)
def test_redis_down_mid_call_degrades_and_recovers_by_itself(
    own_redis, twilio, number_a, tenant_a, settings
):
    from django_redis import get_redis_connection

    cache.clear()
    # Explicit, since a transactional test may run after the default limits were flushed.
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=5)
    call_sid, hello = twilio.voice(number_a.number)
    assert hello.has("Gather")
    active_key = f"rl:active:{tenant_a.id}"
    assert get_redis_connection("default").zscore(active_key, call_sid) is not None

    own_redis.stop()
    started = time.monotonic()
    answer = twilio.gather(call_sid, number_a.number, FAQ_QUESTION)
    second_sid, second_hello = twilio.voice(number_a.number)  # a new call while Redis is down
    elapsed = time.monotonic() - started
    assert answer.status == 200 and answer.said == FAQ_ANSWER
    assert second_hello.has("Gather")
    assert elapsed < settings.WEBHOOK_DEADLINE_SECONDS
    assert [t.text for t in _turns(call_sid)] == [FAQ_QUESTION, FAQ_ANSWER]

    own_redis.start()  # same port, empty: as after a restart
    time.sleep(settings.REDIS_RETRY_SECONDS + 0.1)
    channel_layers.backends = {}  # a fresh process would reconnect the same way
    events = _events_for(
        tenant_group(tenant_a.id),
        lambda: twilio.gather(call_sid, number_a.number, "Thanks, and are you open on Sunday?"),
    )
    third_sid, third_hello = twilio.voice(number_a.number)

    assert third_hello.has("Gather")
    # Rate limits are back in Redis, and live events flow again.
    assert get_redis_connection("default").zscore(active_key, third_sid) is not None
    # (Events queued while Redis was down may arrive too, late: the publisher retries them.)
    said = [e["data"]["turn"]["text"] for e in events if e["event"] == "turn"]
    assert said[-2] == "Thanks, and are you open on Sunday?"
    assert len(_turns(call_sid)) == 4


@contextmanager
def database_down() -> Iterator[None]:
    """Make connections to the default database fail inside the block, as when it is down."""
    original = dict(connection.settings_dict)
    connection.close()
    pooled = hasattr(connection, "close_pool")
    if pooled:
        connection.close_pool()  # a new pool is made from the changed settings
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = str(_free_port())  # nothing listens there
        connection.settings_dict["OPTIONS"] = {**original.get("OPTIONS", {}), "connect_timeout": 1}
    else:
        connection.settings_dict["NAME"] = "/nonexistent-directory/db.sqlite3"
    try:
        yield
    finally:
        connection.close()
        if pooled:
            connection.close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(original)


@pytest.mark.django_db(transaction=True)
def test_database_down_answers_fast_with_an_apology_and_leaves_no_half_state(
    twilio, number_a, client
):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, FAQ_QUESTION)

    with database_down():
        started = time.monotonic()
        _, new_call = twilio.voice(number_a.number)
        during_call = twilio.gather(call_sid, number_a.number, "Can I book for Monday?")
        ready = client.get("/readyz")
        elapsed = time.monotonic() - started

    for response in (new_call, during_call):
        assert response.status == 200
        assert "something went wrong" in response.said
        assert response.has("Hangup")
    assert elapsed < 10
    assert ready.status_code == 503
    assert "database" in ready.json()["failing"]

    # The database is back: the call is as it was (whole turns only) and goes on.
    with scopes_disabled():
        assert Call.objects.count() == 1
        assert Call.objects.get(call_sid=call_sid).status == Call.Status.IN_PROGRESS
    assert [t.text for t in _turns(call_sid)] == [FAQ_QUESTION, FAQ_ANSWER]
    again = twilio.gather(call_sid, number_a.number, FAQ_QUESTION)
    assert again.said == FAQ_ANSWER
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "trouble",
    [
        {"fail_rate": 1.0, "fail_kinds": ["503"]},
        {"fail_rate": 1.0, "fail_kinds": ["429"], "retry_after": 0.3},
        {"ttft_ms": 5000},
    ],
    ids=["failing", "rate-limited", "slow"],
)
def test_groq_in_trouble_for_a_whole_call_still_answers_every_turn_in_time(
    twilio, number_a, fake_groq, settings, trouble
):
    from calls.phrases import APOLOGY

    settings.WEBHOOK_DEADLINE_SECONDS = 3.0
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 0.5
    settings.LLM_BACKOFF_SECONDS = 0.05
    fake_groq.configure(**trouble)
    call_sid, _ = twilio.voice(number_a.number)
    for question in ("Are you there?", "Hello, can you hear me?", "Is anyone answering?"):
        started = time.monotonic()
        response = twilio.gather(call_sid, number_a.number, question)
        assert time.monotonic() - started < settings.WEBHOOK_DEADLINE_SECONDS + 0.5
        assert response.status == 200 and response.said == APOLOGY
        assert response.has("Gather")  # the call goes on
    assert [t.source for t in _turns(call_sid)][1::2] == ["apology"] * 3
