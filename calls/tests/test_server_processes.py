"""Server processes that stop mid-call: each one beats in Redis and owns the call sockets it holds;
the sweeper closes the live calls of a process whose heartbeat stopped, and only those."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import websockets
from django.conf import settings
from django.db import connections
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call
from calls.services import calls_close_orphaned
from calls.tasks import close_orphaned_calls
from calls.transports.signatures import sign
from core import load
from devtools.simulator import TwilioSimulator, new_call, parse_connect
from devtools.testing import channels_database_env, database_url, start_daphne, stop_daphne

pytestmark = pytest.mark.django_db(transaction=True)

STOPPED = "the server process holding the call stopped"


def _live_call(tenant, number, *, server: str, answered_ago: float, mode=Call.Mode.RELAY) -> Call:
    answered = timezone.now() - timedelta(seconds=answered_ago)
    with scopes_disabled():
        return Call.objects.create(
            tenant=tenant,
            phone_number=number,
            call_sid="CA" + uuid.uuid4().hex,
            from_number="+15551230000",
            to_number=number.number,
            status=Call.Status.IN_PROGRESS,
            mode=mode,
            started_at=answered,
            answered_at=answered,
            server=server,
        )


def _fresh(call: Call) -> Call:
    for connection in connections.all():
        connection.close()  # read what other processes committed
    with scopes_disabled():
        return Call.objects.get(pk=call.pk)


def test_the_sweeper_task_closes_only_the_calls_of_a_server_whose_heartbeat_stopped(
    celery_worker_process, tenant_a, number_a
):
    load.heartbeat()  # this process is a live server
    stopped = _live_call(tenant_a, number_a, server="gone-host:4242:0badbeef", answered_ago=120)
    ours = _live_call(tenant_a, number_a, server=load.server_id(), answered_ago=120)
    gather = _live_call(tenant_a, number_a, server="", answered_ago=120, mode=Call.Mode.GATHER)
    # Just picked up: its server gets the time to beat before it is judged.
    just_held = _live_call(tenant_a, number_a, server="gone-host:4242:0badbeef", answered_ago=1)

    assert close_orphaned_calls.delay().get(timeout=30) == 1

    closed = _fresh(stopped)
    assert (closed.status, closed.outcome, closed.error) == ("completed", "error", STOPPED)
    assert closed.ended_at is not None
    assert [_fresh(c).status for c in (ours, gather, just_held)] == ["in-progress"] * 3
    assert close_orphaned_calls.delay().get(timeout=30) == 0  # once


# --- two real server processes, one killed mid-call --------------------------------------------


def _server_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "PUBLIC_BASE_URL": "",
        **channels_database_env(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class RelayCaller:
    """Twilio's side of one relay call on one server: the voice webhook, then the socket."""

    def __init__(self, base_url: str, to: str) -> None:
        self.simulator = TwilioSimulator(base_url=base_url, auth_token=settings.TWILIO_AUTH_TOKEN)
        self.to = to
        self.call_sid, self.base = new_call(
            to=to, from_="+15551239999", account_sid="AC" + "1" * 32
        )
        self.socket = None

    def dial(self) -> tuple[str, dict[str, str]]:
        status, body, _ = self.simulator.post(
            "/twilio/voice", {**self.base, "CallStatus": "ringing"}
        )
        assert status == 200, body
        socket_url, _, parameters = parse_connect(body)
        assert socket_url, body
        return socket_url, parameters

    async def connect(self) -> None:
        socket_url, parameters = await asyncio.to_thread(self.dial)
        signature = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
        self.socket = await websockets.connect(
            socket_url, additional_headers={"X-Twilio-Signature": signature}, open_timeout=20
        )
        setup = {
            "type": "setup",
            "callSid": self.call_sid,
            "accountSid": self.base["AccountSid"],
            "from": "+15551239999",
            "to": self.to,
            "customParameters": parameters,
        }
        await self.socket.send(json.dumps(setup))

    async def ask(self, text: str) -> str:
        await self.socket.send(json.dumps({"type": "prompt", "voicePrompt": text, "last": True}))
        answer = ""
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 20))
            if message.get("type") == "text":
                answer += message["token"]
                if message.get("last"):
                    return answer

    def call(self) -> Call:
        """The call as the servers stored it (read on a connection closed again at once, so
        that no thread of the test holds one when the test database is dropped)."""
        return _closing_connections(_stored, self.call_sid)


def _stored(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


def _closing_connections(func, *args):
    for connection in connections.all():
        connection.close()
    try:
        return func(*args)
    finally:
        for connection in connections.all():
            connection.close()


def test_a_server_killed_mid_call_loses_only_its_own_calls_which_the_sweeper_closes(
    tenant_a, number_a, assistant_a, tmp_path: Path, settings
):
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.save()
    env = _server_env(SERVER_HEARTBEAT_SECONDS="0.5", SERVER_HEARTBEAT_TTL="2")
    settings.SERVER_HEARTBEAT_TTL = 2  # the sweeper's side
    killed = start_daphne(env=env, log_path=tmp_path / "killed.log")
    survivor = start_daphne(env=env, log_path=tmp_path / "survivor.log")
    try:
        on_killed = RelayCaller(killed.base_url, number_a.number)
        on_survivor = RelayCaller(survivor.base_url, number_a.number)

        async def scenario() -> None:
            await on_killed.connect()
            await on_survivor.connect()
            assert "eight to six" in await on_killed.ask("When are you open?")
            assert "eight to six" in await on_survivor.ask("When are you open?")
            os.kill(killed.process.pid, signal.SIGKILL)  # no goodbye: the socket just drops
            killed.process.wait(timeout=10)
            await asyncio.sleep(3)  # the killed server's heartbeat runs out
            assert await asyncio.to_thread(_closing_connections, calls_close_orphaned) == 1
            # The survivor's call goes on, and a new call is answered by the survivor.
            assert "eight to six" in await on_survivor.ask("When are you open?")
            newcomer = RelayCaller(survivor.base_url, number_a.number)
            await newcomer.connect()
            assert "eight to six" in await newcomer.ask("When are you open?")
            for caller in (on_survivor, newcomer):
                await caller.socket.close()

        asyncio.run(scenario())
        lost, kept = on_killed.call(), on_survivor.call()
        assert (lost.status, lost.outcome, lost.error) == ("completed", "error", STOPPED)
        assert lost.server != kept.server and kept.server
        deadline = time.monotonic() + 10  # the survivor closes its calls as the sockets close
        while on_survivor.call().status != "completed" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert on_survivor.call().outcome == "completed", survivor.log()
    finally:
        stop_daphne(killed)
        stop_daphne(survivor)


def test_a_real_server_at_capacity_refuses_the_next_relay_call_before_its_socket_opens(
    tenant_a, number_a, assistant_a, tmp_path: Path
):
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.save()
    server = start_daphne(env=_server_env(LOAD_MAX_SESSIONS="1"), log_path=tmp_path / "d.log")
    try:
        first = RelayCaller(server.base_url, number_a.number)

        async def scenario() -> None:
            await first.connect()
            assert "eight to six" in await first.ask("When are you open?")
            ready = await asyncio.to_thread(httpx.get, server.base_url + "/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["failing"] == ["load"]
            second = RelayCaller(server.base_url, number_a.number)
            status, body, _ = await asyncio.to_thread(
                second.simulator.post, "/twilio/voice", {**second.base, "CallStatus": "ringing"}
            )
            assert status == 200
            assert b"all of our lines are busy" in body and b"<Hangup" in body
            assert b"<Connect" not in body
            refused = await asyncio.to_thread(second.call)
            assert (refused.status, refused.outcome) == ("rejected", "rejected_overloaded")
            # The call in progress is answered as before.
            assert "eight to six" in await first.ask("When are you open?")
            await first.socket.close()

        asyncio.run(scenario())
        deadline = time.monotonic() + 10  # the socket closed: the process has room again
        while httpx.get(server.base_url + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
    finally:
        stop_daphne(server)
