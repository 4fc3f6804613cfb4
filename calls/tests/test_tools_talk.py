"""Tools on the browser's talk page (mode "web"): the page's WebSocket through the real ASGI
app, the fake Groq server asking for tool calls, a real HTTP tool server on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django_scopes import scopes_disabled

from calls import phrases
from calls.events import tenant_group, unbatch
from calls.models import Call, Turn
from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def socket(user, assistant) -> WebsocketCommunicator:
    client = Client()
    client.force_login(user)
    headers = [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    return WebsocketCommunicator(
        application, f"/ws/assistants/{assistant.id}/talk/", headers=headers
    )


async def receive(communicator) -> dict:
    return json.loads(await communicator.receive_from(timeout=10))


def talk(user, assistant, text: str, *, until: str = "latency") -> list[dict]:
    """Say `text` on the talk page; the frames up to the first of type `until`."""

    communicator = socket(user, assistant)

    async def scenario():
        connected, _ = await communicator.connect()
        assert connected
        assert (await receive(communicator))["type"] == "ready"
        await communicator.send_to(text_data=json.dumps({"type": "prompt", "text": text}))
        frames = []
        while not frames or frames[-1]["type"] != until:
            frames.append(await receive(communicator))
        await communicator.disconnect()
        return frames

    return async_to_sync(scenario)()


def said(frames: list[dict]) -> str:
    return "".join(f["token"] for f in frames if f["type"] == "text")


def web_turns() -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__mode="web", role="assistant").order_by("sequence"))


def test_a_tool_result_changes_the_answer_on_the_page(
    alice, assistant_a, tenant_a, tools_a, tool_server, fake_groq
):
    layer = get_channel_layer()

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(tenant_group(tenant_a.id), channel)
        return channel

    channel = async_to_sync(listen)()
    frames = talk(alice, assistant_a, "Can I book a cleaning on Tuesday?")

    assert said(frames) == "Booked: cleaning on tuesday, reference AB12."
    [turn] = web_turns()
    assert turn.tool_calls[0]["name"] == "book_appointment"
    body = tool_server.received("/book")[0].json()
    assert body["call"]["mode"] == "web"

    async def turn_events():
        events = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 2)
            except TimeoutError:
                return events
            events.extend(e for e in unbatch(message) if e.get("event") == "turn")

    events = async_to_sync(turn_events)()
    turns = [e["data"]["turn"] for e in events]
    tools_shown = [t["tool_calls"] for t in turns if t["role"] == "assistant"]
    assert tools_shown and tools_shown[0][0]["name"] == "book_appointment"


def test_a_slow_tool_gets_a_filler_first(alice, assistant_a, tools_a, tool_server, fake_groq):
    fake_groq.queue_tool_calls([{"name": "track_van", "arguments": {"item": "van"}}])
    frames = talk(alice, assistant_a, "Where is the van?")
    texts = [f["token"] for f in frames if f["type"] == "text" and f["token"]]
    assert texts[0] == phrases.CHECKING + " "
    assert said(frames).endswith("The van is 10 minutes away.")


def test_a_hanging_tool_still_gets_an_answer(alice, assistant_a, tools_a, tool_server, fake_groq):
    fake_groq.queue_tool_calls([{"name": "check_warranty", "arguments": {"item": "boiler"}}])
    frames = talk(alice, assistant_a, "Is my boiler under warranty?")
    assert said(frames).endswith("I'm sorry, I could not get that done just now.")
    assert web_turns()[0].tool_calls[0]["status"] == "timeout"


def test_a_transfer_in_words_is_stored_and_ends_the_page_session(
    alice, assistant_a, tools_a, fake_groq
):
    frames = talk(alice, assistant_a, "I want to talk to a human in billing", until="end")

    assert said(frames) == "Let me transfer you to billing now."
    end = frames[-1]
    assert end["type"] == "end" and end["transfer"] is True and end["destination"] == "billing"
    with scopes_disabled():
        call = Call.objects.get(mode="web")
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert web_turns()[0].tool_calls[0]["arguments"] == {"destination": "billing"}


def test_end_call_closes_the_page_session(alice, assistant_a, tools_a, fake_groq):
    frames = talk(alice, assistant_a, "Goodbye", until="end")
    assert said(frames) == phrases.GOODBYE
    assert frames[-1]["type"] == "end" and frames[-1]["hangup"] is True


def test_an_outsider_cannot_use_the_assistant_or_its_tools(
    charlie, assistant_a, tools_a, tool_server, fake_groq
):
    communicator = socket(charlie, assistant_a)

    async def scenario():
        connected, _ = await communicator.connect()
        return connected

    assert async_to_sync(scenario)() is False
    assert tool_server.received() == []


def test_the_first_thing_said_may_search_the_knowledge_base(
    alice, assistant_a, tools_a, tools_b, fake_groq
):
    """The first prompt starts the call: its answer still runs in the tenant's scope."""
    frames = talk(alice, assistant_a, "Where can customers park?")
    assert said(frames) == "Customers park for free behind the workshop on Mill Lane."
    assert [p["title"] for p in web_turns()[0].tool_calls[0]["passages"]] == ["Parking"]
