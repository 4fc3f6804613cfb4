"""Relay mode end to end: a real daphne process on the test database, the fake Groq server at
the wire, and Twilio's side played over real HTTP and a real WebSocket (`simulate_call --relay`).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid

import httpx
import pytest
import websockets
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call, Turn
from calls.transports.signatures import sign
from devtools.simulator import TwilioSimulator, parse_connect, run_relay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def relay_a(assistant_a, number_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.save()
    return assistant_a


def stored(call_sid: str) -> tuple[Call, list[Turn]]:
    for connection in connections.all():
        connection.close()  # read what daphne committed, not a stale snapshot
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
        return call, list(call.turns.order_by("sequence"))


def stored_once_closed(call_sid: str) -> tuple[Call, list[Turn]]:
    """The call and its turns once the server has closed the session (the call is finalised
    after the socket's last answer is stored)."""
    deadline = time.monotonic() + 10
    while stored(call_sid)[0].status != Call.Status.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.05)
    return stored(call_sid)


def test_a_relay_call_through_daphne_ends_in_a_transfer(
    daphne_server, relay_a, number_a, fake_groq
):
    fake_groq.queue_answer("Yes, we can fix a leaking tap today. Shall I send someone?")
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    try:
        call = run_relay(
            simulator,
            to=number_a.number,
            from_="+15551239999",
            utterances=["When are you open?", "Can you fix a leaking tap?"],
            press="0",
        )
    finally:
        simulator.close()
    assert call.refused == "", daphne_server.log()
    assert call.socket_url.startswith(daphne_server.base_url.replace("http://", "ws://"))
    faq, llm_turn = call.turns
    assert faq.text == "We are open from eight to six, Monday to Friday." and faq.frames == 1
    assert llm_turn.text == "Yes, we can fix a leaking tap today. Shall I send someone?"
    assert llm_turn.frames >= 2  # the first token at once, then the rest
    assert llm_turn.first_token_ms is not None and llm_turn.first_token_ms <= llm_turn.last_token_ms
    assert call.handoff["transfer"] is True
    assert call.action_status == 200 and call.dialled == "+15005550001"

    record, turns = stored_once_closed(call.call_sid)
    assert (record.mode, record.status, record.outcome) == ("relay", "completed", "transferred")
    assert [t.role for t in turns] == ["caller", "assistant", "caller", "assistant"]
    assert turns[3].source == "llm" and turns[3].last_token_sent_ms is not None


def test_simulate_call_relay_prints_each_turn_with_time_to_first_token(
    daphne_server, relay_a, number_a, fake_groq
):
    fake_groq.queue_answer("We cover the whole city and nearby towns.")
    out = io.StringIO()
    call_command(
        "simulate_call",
        "--relay",
        "--url",
        daphne_server.base_url,
        "--to",
        number_a.number,
        "--say",
        "Which areas do you cover?",
        stdout=out,
    )
    text = out.getvalue()
    assert "caller:    Which areas do you cover?" in text
    assert "assistant: We cover the whole city and nearby towns." in text
    assert "first token" in text and "text frames" in text
    assert "(hang up)" in text
    assert "stored: status=completed outcome=completed" in text


def test_a_bad_handshake_is_refused_by_daphne(daphne_server, relay_a, number_a):
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "From": "+15551238888", "To": number_a.number}
    try:
        status, body, _ = simulator.post("/twilio/voice", params)
    finally:
        simulator.close()
    socket_url, _, _ = parse_connect(body)

    async def handshake(signature: str) -> int:
        try:
            async with websockets.connect(
                socket_url, additional_headers={"X-Twilio-Signature": signature}
            ) as socket:
                await socket.send(json.dumps({"type": "setup", "callSid": call_sid}))
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    wrong = sign(url=socket_url, params={}, auth_token="not-the-token")
    assert asyncio.run(handshake(wrong)) == 403
    assert asyncio.run(handshake("")) == 403
    right = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
    assert asyncio.run(handshake(right)) == 101
    # The accepted session's close ends the call (and the server has stopped writing to the
    # test's database before it is emptied).
    call, _ = stored_once_closed(call_sid)
    assert call.status == Call.Status.COMPLETED, daphne_server.log()


def test_daphne_survives_a_one_megabyte_frame_and_keeps_the_session(
    daphne_server, relay_a, number_a, fake_groq
):
    fake_groq.queue_answer("Still listening.")
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "From": "+15551237777", "To": number_a.number}
    try:
        _, body, _ = simulator.post("/twilio/voice", params)
    finally:
        simulator.close()
    socket_url, _, _ = parse_connect(body)

    async def conversation() -> str:
        signature = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
        async with websockets.connect(
            socket_url, additional_headers={"X-Twilio-Signature": signature}, max_size=None
        ) as socket:
            await socket.send(json.dumps({"type": "setup", "callSid": call_sid}))
            # 1 MB: under daphne's frame limit (1 MiB), ignored by the consumer (too large).
            await socket.send(json.dumps({"type": "prompt", "voicePrompt": "x" * 999_000}))
            await socket.send("{not json")
            await socket.send(json.dumps({"type": "prompt", "voicePrompt": "Hello?", "last": True}))
            text = ""
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                text += frame.get("token", "")
                if frame.get("last"):
                    return text

    assert asyncio.run(conversation()) == "Still listening."
    _, turns = stored_once_closed(call_sid)
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "Hello?"),
        ("assistant", "Still listening."),
    ]


def test_a_frame_over_daphnes_limit_closes_only_that_session_and_the_call_is_finalised(
    daphne_server, relay_a, number_a, fake_groq
):
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "From": "+15551236666", "To": number_a.number}
    try:
        _, body, _ = simulator.post("/twilio/voice", params)
    finally:
        simulator.close()
    socket_url, _, _ = parse_connect(body)

    async def conversation() -> None:
        signature = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
        async with websockets.connect(
            socket_url, additional_headers={"X-Twilio-Signature": signature}, max_size=None
        ) as socket:
            await socket.send(json.dumps({"type": "setup", "callSid": call_sid}))
            await socket.send(json.dumps({"type": "prompt", "voicePrompt": "When are you open?"}))
            while not json.loads(await asyncio.wait_for(socket.recv(), 10)).get("last"):
                pass
            with pytest.raises(websockets.ConnectionClosed):
                await socket.send("x" * (2 * 1024 * 1024))
                await asyncio.wait_for(socket.recv(), 10)

    asyncio.run(conversation())
    call, turns = stored_once_closed(call_sid)
    assert call.status == Call.Status.COMPLETED, daphne_server.log()
    assert [t.role for t in turns] == ["caller", "assistant"]  # nothing said before was lost
    assert httpx.get(daphne_server.base_url + "/healthz").status_code == 200


def test_simulate_call_relay_against_a_gather_assistant_says_so_and_ends_the_call(
    daphne_server, assistant_a, number_a
):
    with pytest.raises(CommandError) as refused:
        call_command(
            "simulate_call",
            "--relay",
            "--url",
            daphne_server.base_url,
            "--to",
            number_a.number,
            "--say",
            "Hello?",
            stdout=io.StringIO(),
        )
    assert "is in gather mode, not relay" in str(refused.value)
    assert "without --relay" in str(refused.value)
    [call_sid] = [w for w in str(refused.value).split() if w.startswith("CA")][:1] or [""]
    record, _ = stored(call_sid.rstrip(":"))
    # The answered call was ended: it neither shows as live nor holds a line.
    assert (record.mode, record.status) == ("gather", "completed")
