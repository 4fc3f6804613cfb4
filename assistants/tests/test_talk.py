"""Talking to an assistant from the browser: the page, and its WebSocket through the real ASGI app
(session auth, tenant isolation, streaming, interrupts). Groq is the fake server at the wire."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client
from django_scopes import scopes_disabled

from calls.events import tenant_group, unbatch
from calls.models import Call, Turn
from config.asgi import application
from core.asyncdb import database_async
from tenants.models import Membership, RateLimit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


def _socket(user, assistant, *, origin: str = "http://localhost") -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(
        application, f"/ws/assistants/{assistant.id}/talk/", headers=headers
    )


async def _receive(communicator, timeout: float = 10) -> dict:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def _answer(communicator) -> tuple[str, list[dict], dict]:
    """Frames of one answer: (its text, the text frames, the latency frame)."""
    frames = []
    while True:
        frame = await _receive(communicator)
        frames.append(frame)
        if frame["type"] == "text" and frame["last"]:
            break
    latency = await _receive(communicator)
    return "".join(f["token"] for f in frames), frames, latency


def _web_calls() -> list[Call]:
    with scopes_disabled():
        return list(Call.objects.filter(mode=Call.Mode.WEB))


def _turns(call: Call) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call=call).order_by("sequence"))


# --- the page ---------------------------------------------------------------------------------


def test_a_member_gets_the_page(client, alice, assistant_a):
    client.force_login(alice)
    response = client.get(f"/assistants/{assistant_a.id}/talk/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-socket-path="/ws/assistants/{assistant_a.id}/talk/"' in page
    assert "Talk to Acme front desk" in page
    assert 'id="question"' in page  # the text box, for browsers without speech recognition


def test_a_viewer_of_the_tenant_may_talk_too(client, bob, assistant_a):
    client.force_login(bob)
    assert client.get(f"/assistants/{assistant_a.id}/talk/").status_code == 200


def test_another_tenants_admin_gets_404(client, charlie, assistant_a):
    client.force_login(charlie)
    assert client.get(f"/assistants/{assistant_a.id}/talk/").status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client, assistant_a):
    response = client.get(f"/assistants/{assistant_a.id}/talk/")
    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login/")


def test_a_member_who_is_not_staff_logs_in_and_lands_on_the_talk_page(
    client, tenant_a, assistant_a
):
    from django.contrib.auth import get_user_model

    member = get_user_model().objects.create_user(username="dana", password="a long pass phrase")
    Membership.objects.create(user=member, tenant=tenant_a, role="viewer")
    talk = f"/assistants/{assistant_a.id}/talk/"
    login = client.get(talk)["Location"]
    response = client.post(login, {"username": "dana", "password": "a long pass phrase"})
    assert response.status_code == 302 and response["Location"] == talk
    assert client.get(talk).status_code == 200


def test_an_unknown_assistant_is_404(client, alice):
    client.force_login(alice)
    assert client.get("/assistants/00000000-0000-0000-0000-000000000000/talk/").status_code == 404
    assert client.get("/assistants/not-a-uuid/talk/").status_code == 404


# --- the socket -------------------------------------------------------------------------------


def test_an_anonymous_socket_is_refused(assistant_a):
    communicator = _socket(None, assistant_a)

    async def scenario():
        connected, _ = await communicator.connect()
        assert not connected

    async_to_sync(scenario)()
    assert _web_calls() == []


def test_another_tenants_assistant_is_refused(charlie, assistant_a):
    communicator = _socket(charlie, assistant_a)

    async def scenario():
        connected, _ = await communicator.connect()
        assert not connected

    async_to_sync(scenario)()
    assert _web_calls() == []


def test_a_page_of_another_site_cannot_open_the_socket(alice, assistant_a):
    communicator = _socket(alice, assistant_a, origin="https://evil.example")

    async def scenario():
        connected, _ = await communicator.connect()
        assert not connected

    async_to_sync(scenario)()
    assert _web_calls() == []


def test_a_conversation_streams_answers_and_is_stored_as_a_web_call(
    alice, assistant_a, tenant_a, fake_groq
):
    fake_groq.queue_answer("A plumber can come tomorrow. Shall I book it?")
    layer = get_channel_layer()
    communicator = _socket(alice, assistant_a)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(tenant_group(tenant_a.id), channel)
        connected, _ = await communicator.connect()
        assert connected
        ready = await _receive(communicator)
        assert ready["type"] == "ready" and ready["greeting"] == "Acme Plumbing, how can I help?"

        await communicator.send_to(text_data=json.dumps({"type": "prompt", "text": "Boiler?"}))
        text, frames, latency = await _answer(communicator)
        assert text == "A plumber can come tomorrow. Shall I book it?"
        assert len(frames) >= 2  # streamed: the first token at once, then the rest
        assert latency["type"] == "latency"
        assert 0 <= latency["first_token_ms"] <= latency["total_ms"]

        # The FAQ answers at once, as one frame.
        await communicator.send_to(
            text_data=json.dumps({"type": "prompt", "text": "When are you open?"})
        )
        faq, _, _ = await _answer(communicator)
        assert faq == "We are open from eight to six, Monday to Friday."
        await communicator.disconnect()

        events = []
        while True:
            try:
                events.extend(unbatch(await asyncio.wait_for(layer.receive(channel), 2)))
            except TimeoutError:
                return events

    events = async_to_sync(scenario)()
    [call] = _web_calls()
    assert call.tenant_id == tenant_a.id and call.from_number == "web:alice"
    assert call.status == Call.Status.COMPLETED  # closed when the page went away
    turns = _turns(call)
    assert [(t.role, t.source) for t in turns] == [
        ("caller", ""),
        ("assistant", "llm"),
        ("caller", ""),
        ("assistant", "faq"),
    ]
    assert turns[1].llm_first_token_ms is not None and turns[1].last_token_sent_ms is not None
    # The dashboard sees it like a phone call.
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "ended" and kinds.count("turn") == 4


def test_talking_over_the_answer_interrupts_it_and_stores_what_was_heard(
    alice, assistant_a, fake_groq
):
    fake_groq.set_latency(tokens_per_second=20)  # slow enough to talk over
    fake_groq.queue_answer(" ".join(f"word{i}" for i in range(60)) + ".")

    communicator = _socket(alice, assistant_a)

    async def scenario():
        await communicator.connect()
        await _receive(communicator)  # ready
        await communicator.send_to(text_data=json.dumps({"type": "prompt", "text": "Tell me all"}))
        for _ in range(3):
            frame = await _receive(communicator)
            assert frame["type"] == "text" and not frame["last"]
        await communicator.send_to(
            text_data=json.dumps({"type": "interrupt", "heard": "word0 word1"})
        )
        await communicator.send_to(
            text_data=json.dumps({"type": "prompt", "text": "Stop, when are you open?"})
        )
        # Whatever was still in flight, the next answer is the FAQ's.
        while True:
            frame = await _receive(communicator)
            if frame["type"] == "text" and frame["last"] and frame["token"]:
                assert frame["token"] == "We are open from eight to six, Monday to Friday."
                break
        await communicator.disconnect()

    async_to_sync(scenario)()
    [call] = _web_calls()
    caller, interrupted, caller_2, faq = _turns(call)
    assert interrupted.interrupted and interrupted.heard_text == "word0 word1"
    assert interrupted.text.startswith("word0") and "word59" not in interrupted.text
    assert faq.source == "faq" and caller_2.text == "Stop, when are you open?"


def test_bad_frames_do_not_end_the_conversation(alice, assistant_a, fake_groq):
    fake_groq.queue_answer("Still here.")

    communicator = _socket(alice, assistant_a)

    async def scenario():
        await communicator.connect()
        await _receive(communicator)
        for frame in (
            "not json",
            json.dumps({"type": "nope"}),
            json.dumps([1, 2]),
            json.dumps({"type": "prompt", "text": "x" * 1_100_000}),
            json.dumps({"type": "prompt", "text": {"not": "text"}}),
        ):
            await communicator.send_to(text_data=frame)
        await communicator.send_to(bytes_data=b"\x00\x01")
        await communicator.send_to(text_data=json.dumps({"type": "prompt", "text": "Hello?"}))
        text, _, _ = await _answer(communicator)
        assert text == "Still here."
        await communicator.disconnect()

    async_to_sync(scenario)()
    [call] = _web_calls()
    assert [t.text for t in _turns(call)] == ["Hello?", "Still here."]


def test_the_concurrent_calls_limit_applies_to_web_calls(alice, assistant_a, tenant_a):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)

    first, second = _socket(alice, assistant_a), _socket(alice, assistant_a)

    async def scenario():
        assert (await first.connect())[0]
        await _receive(first)
        await first.send_to(text_data=json.dumps({"type": "prompt", "text": "When are you open?"}))
        await _answer(first)  # the first thing said started the call: the line is taken
        assert (await second.connect())[0]
        await _receive(second)  # ready: opening the page takes no line
        await second.send_to(text_data=json.dumps({"type": "prompt", "text": "Hello?"}))
        refusal = await _receive(second)
        assert refusal["type"] == "end" and "lines are busy" in refusal["message"]
        assert (await second.receive_output(timeout=5))["type"] == "websocket.close"
        await first.disconnect()

    async_to_sync(scenario)()
    assert len(_web_calls()) == 1


def test_a_web_call_whose_conversation_cannot_start_is_closed_and_frees_its_line(
    alice, assistant_a, tenant_a, fake_groq
):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    fake_groq.queue_answer("Back again.")
    broken, working = _socket(alice, assistant_a), _socket(alice, assistant_a)

    async def scenario():
        await broken.connect()
        await _receive(broken)  # ready
        # A database fault while the conversation starts (it reads the FAQ then).
        await _sql("ALTER TABLE assistants_faqentry RENAME TO assistants_faqentry_away")
        try:
            await broken.send_to(text_data=json.dumps({"type": "prompt", "text": "Hello?"}))
            assert (await broken.receive_output(timeout=5))["type"] == "websocket.close"
        finally:
            await _sql("ALTER TABLE assistants_faqentry_away RENAME TO assistants_faqentry")
        # The failed call holds no line: the next conversation gets one.
        await working.connect()
        await _receive(working)
        await working.send_to(text_data=json.dumps({"type": "prompt", "text": "Hello again?"}))
        text, _, _ = await _answer(working)
        assert text == "Back again."
        await working.disconnect()

    async_to_sync(scenario)()
    failed, answered = sorted(_web_calls(), key=lambda c: c.started_at)
    assert (failed.status, failed.outcome) == ("completed", "error")
    assert "could not start" in failed.error
    assert answered.outcome == "completed" and len(_turns(answered)) == 2


async def _sql(statement: str) -> None:
    from django.db import connection

    def run():
        with connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()

    await database_async(run)()


@pytest.mark.parametrize("change", ["membership removed", "user deactivated", "logged out"])
def test_an_open_talk_socket_closes_when_its_user_loses_access(
    alice, assistant_a, tenant_a, fake_groq, change
):
    fake_groq.queue_answer("Happy to help.")
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application,
        f"/ws/assistants/{assistant_a.id}/talk/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)],
    )

    def take_access_away():
        if change == "membership removed":
            Membership.objects.filter(user=alice, tenant=tenant_a).delete()
        elif change == "user deactivated":
            alice.is_active = False
            alice.save()
        else:
            client.logout()

    async def scenario():
        await communicator.connect()
        await _receive(communicator)  # ready
        await communicator.send_to(text_data=json.dumps({"type": "prompt", "text": "Hi?"}))
        text, _, _ = await _answer(communicator)
        assert text == "Happy to help."
        await database_async(take_access_away)()
        closed = await communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4403}

    async_to_sync(scenario)()
    [call] = _web_calls()
    assert call.status == Call.Status.COMPLETED  # the conversation ended with the access
    assert [t.text for t in _turns(call)] == ["Hi?", "Happy to help."]
