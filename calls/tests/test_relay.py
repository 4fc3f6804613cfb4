"""Relay mode: the voice webhook's ConversationRelay answer, the /twilio/relay WebSocket consumer
(through Channels' communicator against the real ASGI app) and /twilio/relay-action.

Groq is the fake server at the wire; Twilio's requests and handshakes are signed like Twilio's.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.events import tenant_group, unbatch
from calls.models import Call, Turn
from calls.phrases import CUT_SHORT
from calls.tests.relay_helpers import RelayClient, relay_socket, text_of
from calls.transports import answered
from devtools.fake_groq import tokenize
from tenants.models import RateLimit

pytestmark = pytest.mark.django_db(transaction=True)

B_TOKEN = "tenant-b-own-auth-token-0123456789"


@pytest.fixture
def relay_a(assistant_a, number_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.tts_voice = "Polly.Joanna-Neural"
        assistant_a.save()
    return assistant_a


@pytest.fixture
def relay_b(assistant_b, number_b, tenant_b) -> AssistantConfig:
    tenant_b.set_twilio_auth_token(B_TOKEN)
    tenant_b.save()
    with scopes_disabled():
        assistant_b.mode = AssistantConfig.Mode.RELAY
        assistant_b.save()
    return assistant_b


def start_call(twilio, number, **kw) -> tuple[str, str, str]:
    """The incoming call's voice webhook; returns (CallSid, socket URL, action URL)."""
    call_sid, response = twilio.voice(number.number, **kw)
    assert response.status == 200, response.body
    socket_url, action_url, _ = relay_socket(response)
    return call_sid, socket_url, action_url


def call_of(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


def turns_of(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


def run(coroutine_function, *args):
    return async_to_sync(coroutine_function)(*args)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# --- the voice webhook --------------------------------------------------------------------------


def test_voice_connects_a_relay_assistant_to_conversation_relay(twilio, relay_a, number_a):
    call_sid, response = twilio.voice(number_a.number)
    assert response.status == 200
    relay = next(response.root.iter("ConversationRelay"))
    connect = next(response.root.iter("Connect"))
    call = call_of(call_sid)
    assert call.mode == Call.Mode.RELAY and call.status == Call.Status.IN_PROGRESS
    assert connect.get("action") == "http://testserver/twilio/relay-action"
    assert relay.get("url") == f"ws://testserver/twilio/relay?call={call.id}"
    assert relay.get("welcomeGreeting") == "Acme Plumbing, how can I help?"
    assert relay.get("language") == "en-US"
    assert relay.get("interruptible") == "any"
    assert relay.get("dtmfDetection") == "true"
    assert (relay.get("ttsProvider"), relay.get("voice")) == ("Amazon", "Joanna-Neural")
    params = {p.get("name"): p.get("value") for p in relay.iter("Parameter")}
    assert params == {"call": str(call.id), "tenant": "acme"}
    assert not response.has("Gather")


def test_a_public_base_url_gives_a_wss_socket(twilio, relay_a, number_a, settings):
    settings.PUBLIC_BASE_URL = "https://voice.example.com"
    call_sid, response = twilio.voice(
        number_a.number, signed_url="https://voice.example.com/twilio/voice"
    )
    socket_url, action_url, _ = relay_socket(response)
    assert socket_url == f"wss://voice.example.com/twilio/relay?call={call_of(call_sid).id}"
    assert action_url == "https://voice.example.com/twilio/relay-action"


def test_a_gather_assistant_still_gathers(twilio, assistant_a, number_a):
    _, response = twilio.voice(number_a.number)
    assert response.has("Gather") and not response.has("Connect")


# --- a conversation over the socket -------------------------------------------------------------


def test_a_whole_conversation_of_several_prompts(twilio, relay_a, number_a, fake_groq):
    fake_groq.queue_answer("A plumber can come tomorrow morning. Shall I book it?")
    fake_groq.queue_answer("Booked for nine. Anything else?")
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        assert (await client.connect())[0]
        await client.setup(call_sid)
        await client.prompt("When are you open?")
        faq = await client.answer()
        await client.prompt("My sink is leaking, can someone come?")
        first = await client.answer()
        await client.prompt("Yes please, book it.")
        second = await client.answer()
        await client.close()
        return faq, first, second

    faq, first, second = run(conversation)
    # A FAQ answer leaves as one text message; an LLM answer streams: its first words at once
    # (what the first read of Groq's stream held), the rest gathered into frames
    # (RELAY_TEXT_BATCH_MS), the last one marked `last`.
    assert faq == [
        {"type": "text", "token": "We are open from eight to six, Monday to Friday.", "last": True}
    ]
    assert first[0]["token"] and first[0]["last"] is False
    assert "A plumber can come tomorrow morning.".startswith(first[0]["token"])
    assert len(first) >= 2 and all(f["last"] is False for f in first[:-1])
    assert first[-1]["last"] is True
    assert text_of(first) == "A plumber can come tomorrow morning. Shall I book it?"
    assert text_of(second) == "Booked for nine. Anything else?"

    turns = turns_of(call_sid)
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "When are you open?"),
        ("assistant", "We are open from eight to six, Monday to Friday."),
        ("caller", "My sink is leaking, can someone come?"),
        ("assistant", "A plumber can come tomorrow morning. Shall I book it?"),
        ("caller", "Yes please, book it."),
        ("assistant", "Booked for nine. Anything else?"),
    ]
    assert turns[1].source == "faq" and turns[1].response_sent_ms is not None
    for turn in (turns[3], turns[5]):
        assert turn.source == "llm" and turn.model_used == "llama-3.3-70b-versatile"
        assert turn.tokens_in and turn.tokens_out
        assert turn.llm_first_token_ms is not None
        assert turn.llm_first_token_ms <= turn.response_sent_ms <= turn.last_token_sent_ms
        assert not turn.interrupted
    # The LLM saw the conversation so far.
    messages = fake_groq.requests[-1].messages
    assert [m["content"] for m in messages[1:]] == [t.text for t in turns[:5]]
    call = call_of(call_sid)
    assert call.status == Call.Status.COMPLETED and call.outcome == Call.Outcome.COMPLETED


def test_the_first_text_frame_leaves_before_groq_has_finished(twilio, relay_a, number_a, fake_groq):
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=15)
    fake_groq.configure(answer_tokens=40)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Tell me about your boiler service.")
        first = await client.receive()
        still_streaming = fake_groq.active_streams
        rest = await client.answer()
        await client.close()
        return first, still_streaming, rest

    first, still_streaming, rest = run(conversation)
    assert first["type"] == "text" and first["last"] is False and first["token"]
    assert still_streaming == 1  # Groq was still generating when the first words left
    assert rest[-1]["last"] is True and len(rest) > 10


def _streamed_answer(twilio, number, question: str) -> tuple[list[dict], list[float]]:
    """The frames of one streamed answer, and when each arrived (seconds after the first)."""
    call_sid, socket_url, _ = start_call(twilio, number)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt(question)
        frames, times = [], []
        while not (frames and frames[-1].get("last")):
            frames.append(await client.receive())
            times.append(time.monotonic())
        await client.close()
        return frames, [t - times[0] for t in times]

    return run(conversation)


def test_after_the_first_token_streamed_text_is_gathered_into_fewer_frames(
    twilio, relay_a, number_a, fake_groq, settings
):
    settings.RELAY_TEXT_BATCH_MS = 60
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=200)  # a token every 5 ms
    fake_groq.configure(answer_tokens=40)

    frames, _ = _streamed_answer(twilio, number_a, "Tell me about your boiler service.")
    tokens = tokenize(text_of(frames))  # as the fake server cut the answer
    assert len(tokens) >= 30
    assert frames[0]["token"] == tokens[0]  # the first words leave on their own, at once
    # ~40 more tokens over ~200 ms, sent at most every 60 ms: a handful of frames, not 40.
    assert 2 <= len(frames) - 1 <= 8
    assert all(f["last"] is False for f in frames[:-1]) and frames[-1]["last"] is True


def test_gathered_text_does_not_wait_for_the_next_token(
    twilio, relay_a, number_a, fake_groq, settings
):
    settings.RELAY_TEXT_BATCH_MS = 40
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=4)  # a token every 250 ms
    fake_groq.configure(answer_tokens=4)

    frames, times = _streamed_answer(twilio, number_a, "Are you open today?")
    tokens = tokenize(text_of(frames))
    # Each token is sent ~40 ms after it came, long before the next one: one frame per token.
    assert [f["token"] for f in frames if f["token"]] == tokens
    assert times[1] < 0.25 + 0.2  # the second token did not wait for the third


def test_one_frame_per_token_when_gathering_is_off(twilio, relay_a, number_a, fake_groq, settings):
    settings.RELAY_TEXT_BATCH_MS = 0
    # A token every 25 ms: each arrives alone, and is sent as it comes (nothing waits for more).
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=40)
    fake_groq.configure(answer_tokens=20)

    frames, _ = _streamed_answer(twilio, number_a, "What does a new boiler cost?")
    tokens = tokenize(text_of(frames))
    assert [f["token"] for f in frames[:-1]] == tokens
    assert frames[-1] == {"type": "text", "token": "", "last": True}


def test_an_interrupt_cancels_the_groq_stream_and_stores_what_was_heard(
    twilio, relay_a, number_a, fake_groq
):
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=10)
    fake_groq.configure(answer_tokens=60)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Explain your pricing in detail.")
        frames = [await client.receive(), await client.receive()]
        heard = frames[0]["token"]
        await client.send(
            {"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 800}
        )
        await wait_until(lambda: fake_groq.requests[-1].client_closed)
        quiet = await client.nothing_more(0.5)
        await client.close()
        return frames, heard, quiet

    frames, heard, quiet = run(conversation)
    assert quiet  # nothing more was sent after the interrupt
    assert fake_groq.requests[-1].client_closed
    assert fake_groq.active_streams == 0
    answer = turns_of(call_sid)[-1]
    assert answer.role == "assistant" and answer.interrupted
    assert answer.heard_text == heard.strip()
    assert answer.text.startswith(text_of(frames))
    assert len(answer.text.split()) < 60


def test_an_interrupt_after_the_answer_was_sent_marks_it_heard_in_part(
    twilio, relay_a, number_a, fake_groq
):
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("When are you open?")
        await client.answer()
        await client.send({"type": "interrupt", "utteranceUntilInterrupt": "We are open"})
        await client.prompt("And on Saturday?")
        await client.answer()
        await client.close()

    run(conversation)
    turns = turns_of(call_sid)
    assert (turns[1].interrupted, turns[1].heard_text) == (True, "We are open")
    # The next question was asked with what the caller heard, not the whole answer.
    assert fake_groq.requests[-1].messages[2]["content"] == "We are open"


def test_a_new_prompt_while_streaming_cancels_the_old_answer(twilio, relay_a, number_a, fake_groq):
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=10)
    fake_groq.configure(answer_tokens=60)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Tell me everything about drains.")
        await client.receive()
        fake_groq.set_latency(tokens_per_second=0)
        fake_groq.queue_answer("Sure, water heaters are our speciality.")
        await client.prompt("Actually, what about water heaters?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = run(conversation)
    assert text_of(frames).endswith("Sure, water heaters are our speciality.")
    assert fake_groq.requests[0].client_closed
    turns = turns_of(call_sid)
    assert [(t.role, t.interrupted) for t in turns] == [
        ("caller", False),
        ("assistant", True),
        ("caller", False),
        ("assistant", False),
    ]
    assert turns[3].text == "Sure, water heaters are our speciality."


def test_dtmf_transfers_to_a_human_with_dial(twilio, relay_a, number_a, fake_groq):
    call_sid, socket_url, action_url = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.send({"type": "dtmf", "digit": "5"})
        ignored = await client.nothing_more(0.3)
        await client.send({"type": "dtmf", "digit": "0"})
        end = await client.receive()
        await client.close()
        return ignored, end

    ignored, end = run(conversation)
    assert ignored
    assert end["type"] == "end"
    handoff = json.loads(end["handoffData"])
    assert handoff["transfer"] is True and handoff["reason"] == "live-agent-handoff"

    params = twilio.params(
        call_sid,
        to=number_a.number,
        CallStatus="in-progress",
        SessionStatus="ended",
        SessionDuration="12",
        HandoffData=end["handoffData"],
    )
    response = twilio.post("/twilio/relay-action", params)
    assert response.status == 200
    assert response.texts("Dial") == ["+15005550001"]
    call = call_of(call_sid)
    assert (call.status, call.outcome) == (Call.Status.COMPLETED, Call.Outcome.TRANSFERRED)
    # Twilio retries: the same answer, nothing changes.
    again = twilio.post("/twilio/relay-action", params)
    assert again.texts("Dial") == ["+15005550001"]
    assert call_of(call_sid).ended_at == call.ended_at


def test_relay_action_hangs_up_when_the_session_just_ended(twilio, relay_a, number_a):
    call_sid, _, _ = start_call(twilio, number_a)
    params = twilio.params(
        call_sid,
        to=number_a.number,
        CallStatus="in-progress",
        SessionStatus="completed",
        SessionDuration="30",
    )
    response = twilio.post("/twilio/relay-action", params)
    assert response.status == 200
    assert response.has("Hangup") and not response.has("Dial")
    call = call_of(call_sid)
    assert (call.status, call.outcome) == (Call.Status.COMPLETED, Call.Outcome.COMPLETED)
    # A transfer asked for in forged or malformed HandoffData is not honoured without a number.
    for raw in ("not json", "[1, 2]", '{"transfer": "yes"}'):
        params["HandoffData"] = raw
        assert twilio.post("/twilio/relay-action", params).has("Hangup")


def test_relay_action_refuses_an_unsigned_request(twilio, relay_a, number_a):
    call_sid, _, _ = start_call(twilio, number_a)
    params = twilio.params(call_sid, to=number_a.number, HandoffData='{"transfer": true}')
    response = twilio.post("/twilio/relay-action", params, signature="bad")
    assert response.status == 403
    assert call_of(call_sid).status == Call.Status.IN_PROGRESS


def test_relay_action_for_another_tenants_call_needs_that_tenants_signature(
    twilio, relay_a, number_a, relay_b
):
    call_sid, _, _ = start_call(twilio, number_a)
    params = twilio.params(call_sid, to=number_a.number, HandoffData='{"transfer": true}')
    response = twilio.post("/twilio/relay-action", params, auth_token=B_TOKEN)
    assert response.status == 403
    assert call_of(call_sid).status == Call.Status.IN_PROGRESS


# --- the handshake and hostile input ------------------------------------------------------------


def test_a_bad_handshake_signature_is_refused_before_accept(twilio, relay_a, number_a):
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def attempts():
        results = []
        for client in (
            RelayClient(socket_url, signature="bm90IGEgc2lnbmF0dXJl"),
            RelayClient(socket_url, signature=""),
            RelayClient(socket_url, auth_token="some-other-token"),
            RelayClient(socket_url, signed_url=socket_url.replace("call=", "call=0")),
            RelayClient(socket_url.split("?")[0] + "?call=not-a-uuid"),
        ):
            results.append(await client.connect())
        return results

    for connected, _ in run(attempts):
        assert connected is False
    assert turns_of(call_sid) == []


def test_a_finished_call_cannot_be_reopened(twilio, relay_a, number_a):
    call_sid, socket_url, _ = start_call(twilio, number_a)
    twilio.status(call_sid, number_a.number, "completed", sequence=5)

    async def attempt():
        return await RelayClient(socket_url).connect()

    assert run(attempt)[0] is False


def test_a_setup_naming_another_tenants_call_is_refused(
    twilio, relay_a, number_a, relay_b, number_b
):
    a_sid, _, _ = start_call(twilio, number_a)
    # Charlie's tenant (B) has a genuine session of its own, signed with its own token...
    b_sid, b_socket, _ = start_call(twilio, number_b, auth_token=B_TOKEN)

    async def attempt():
        client = RelayClient(b_socket, auth_token=B_TOKEN)
        assert (await client.connect())[0]
        # ...and tries to bind it to tenant A's call.
        await client.setup(a_sid)
        closed = await client.communicator.receive_output(timeout=5)
        return closed

    closed = run(attempt)
    assert closed == {"type": "websocket.close", "code": 4404}
    assert turns_of(a_sid) == [] and turns_of(b_sid) == []
    assert call_of(a_sid).status == Call.Status.IN_PROGRESS


def test_another_tenants_socket_url_signed_with_its_own_token_is_refused(
    twilio, relay_a, number_a, relay_b
):
    _, a_socket, _ = start_call(twilio, number_a)

    async def attempt():
        return await RelayClient(a_socket, auth_token=B_TOKEN).connect()

    assert run(attempt)[0] is False


def test_malformed_unknown_and_huge_frames_do_not_crash_it(twilio, relay_a, number_a, fake_groq):
    fake_groq.queue_answer("Still here and listening.")
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.prompt("before setup")  # ignored: no session yet
        await client.setup(call_sid)
        for raw in (
            "{not json",
            "[]",
            "null",
            '"text"',
            "{}",
            '{"type": 5}',
            '{"type": "explode"}',
            '{"type": "prompt"}',
            '{"type": "prompt", "voicePrompt": {"a": 1}}',
            '{"type": "prompt", "voicePrompt": "   "}',
            '{"type": "dtmf", "digit": null}',
            '{"type": "interrupt", "utteranceUntilInterrupt": 12}',
            '{"type": "setup", "callSid": "CAother"}',
            json.dumps({"type": "prompt", "voicePrompt": "x" * (1024 * 1024)}),
            "\x00" * 1000,
        ):
            await client.send_raw(text=raw)
        await client.send_raw(data=b"\x00\x01binary")
        await client.send({"type": "error", "description": "Invalid message received"})
        quiet = await client.nothing_more(0.3)
        await client.prompt("Are you still there?\x00")
        frames = await client.answer()
        await client.close()
        return quiet, frames

    quiet, frames = run(conversation)
    assert quiet
    assert text_of(frames) == "Still here and listening."
    assert [(t.role, t.text) for t in turns_of(call_sid)] == [
        ("caller", "Are you still there?"),
        ("assistant", "Still here and listening."),
    ]


def test_a_huge_prompt_is_cut_to_the_utterance_limit(
    twilio, relay_a, number_a, fake_groq, settings
):
    settings.RELAY_MAX_FRAME_CHARS = 2 * 1024 * 1024
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("word " * 200_000)
        frames = await client.answer()
        await client.close()
        return frames

    assert run(conversation)[-1]["last"] is True
    caller = turns_of(call_sid)[0]
    assert len(caller.text) <= settings.MAX_UTTERANCE_CHARS


def test_no_llm_configured_gets_a_clear_spoken_reply(twilio, relay_a, number_a, settings):
    settings.GROQ_API_KEY = settings.GROQ_BASE_URL = ""
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Can you fix my boiler?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = run(conversation)
    assert len(frames) == 1 and "no language model connected" in frames[0]["token"]
    assert turns_of(call_sid)[-1].source == "not_configured"


def test_groq_failing_gets_an_apology_after_the_fallback_model(
    twilio, relay_a, number_a, fake_groq, settings
):
    settings.LLM_BACKOFF_SECONDS = 0.01
    for _ in range(6):
        fake_groq.queue_fault("500")
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Can you fix my boiler?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = run(conversation)
    assert "having trouble answering" in text_of(frames)
    turn = turns_of(call_sid)[-1]
    assert turn.source == "apology" and "fallback_model:llama-3.1-8b-instant" in turn.fallbacks
    assert "HTTP 500" in turn.error


# --- limits and events --------------------------------------------------------------------------


def test_the_turn_limit_speaks_and_continues(twilio, relay_a, number_a, tenant_a, fake_groq):
    RateLimit.objects.create(
        tenant=tenant_a,
        kind=RateLimit.Kind.TURNS_PER_CALL,
        limit=1,
        window_seconds=60,
        action=RateLimit.Action.SPEAK_AND_CONTINUE,
    )
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("When are you open?")
        first = await client.answer()
        await client.prompt("And tomorrow?")
        second = await client.answer()
        await client.close()
        return first, second

    first, second = run(conversation)
    assert "eight to six" in text_of(first)
    assert text_of(second) == "Let's slow down a little. Please wait a moment before asking again."
    assert turns_of(call_sid)[-1].error == "rate limit: turns_per_call"
    assert len(fake_groq.requests) == 0


def test_an_faq_answer_never_asks_the_llm(twilio, relay_a, number_a, fake_groq):
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Hi, when are you open on Monday?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = run(conversation)
    assert frames == [
        {"type": "text", "token": "We are open from eight to six, Monday to Friday.", "last": True}
    ]
    assert fake_groq.requests == []


def test_a_limited_turn_sends_nothing_of_the_llm_asked_beside_the_check(
    twilio, relay_a, number_a, tenant_a, fake_groq
):
    # The LLM is asked while the limits are checked; a refused turn closes that request and
    # the caller hears only the limit's message.
    RateLimit.objects.create(
        tenant=tenant_a,
        kind=RateLimit.Kind.TURNS_PER_CALL,
        limit=1,
        window_seconds=60,
        action=RateLimit.Action.SPEAK_AND_CONTINUE,
    )
    fake_groq.set_latency(ttft_ms=200, tokens_per_second=100)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Do you repair boilers?")
        first = await client.answer()
        asked = len(fake_groq.requests)
        await client.prompt("And radiators?")
        second = await client.answer()
        quiet = await client.nothing_more(0.5)
        later = fake_groq.requests[asked:]
        await wait_until(lambda: all(r.client_closed for r in later))
        await client.close()
        return first, second, quiet

    first, second, quiet = run(conversation)
    assert first[-1]["last"] is True and len(text_of(first)) > 20
    assert second == [
        {
            "type": "text",
            "token": "Let's slow down a little. Please wait a moment before asking again.",
            "last": True,
        }
    ]
    assert quiet  # nothing of the LLM's answer followed
    assert fake_groq.active_streams == 0
    turns = turns_of(call_sid)
    assert [(t.role, t.source) for t in turns[-2:]] == [("caller", ""), ("assistant", "system")]


def test_the_token_budget_ends_the_session_and_the_action_says_why(
    twilio, relay_a, number_a, tenant_a, fake_groq
):
    RateLimit.objects.create(
        tenant=tenant_a,
        kind=RateLimit.Kind.LLM_TOKENS_PER_DAY,
        limit=1,
        window_seconds=86400,
        action=RateLimit.Action.SPEAK_AND_HANG_UP,
    )
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Tell me a story about pipes.")
        first = await client.answer()
        await client.prompt("Another one?")
        end = await client.receive()
        await client.close()
        return first, end

    first, end = run(conversation)
    assert first[-1]["last"] is True
    assert end["type"] == "end"
    params = twilio.params(
        call_sid, to=number_a.number, SessionStatus="ended", HandoffData=end["handoffData"]
    )
    response = twilio.post("/twilio/relay-action", params)
    assert "can't answer more questions today" in response.said and response.has("Hangup")
    assert call_of(call_sid).outcome == Call.Outcome.REJECTED_RATE_LIMIT


def test_turns_and_streamed_words_reach_the_tenants_dashboard_group(
    twilio, relay_a, number_a, tenant_a, tenant_b, fake_groq, settings
):
    settings.RELAY_PARTIAL_EVENT_SECONDS = 0.05
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=40)
    fake_groq.configure(answer_tokens=30)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        layer = get_channel_layer()
        mine, theirs = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(tenant_group(tenant_a.id), mine)
        await layer.group_add(tenant_group(tenant_b.id), theirs)
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Tell me about leak detection.")
        await client.answer()
        await client.close()
        received, other = [], []
        for channel, into in ((mine, received), (theirs, other)):
            while True:
                try:
                    into.extend(unbatch(await asyncio.wait_for(layer.receive(channel), 1.0)))
                except TimeoutError:
                    break
        return received, other

    received, other = run(conversation)
    kinds = [m["event"] for m in received if m["call_sid"] == call_sid]
    assert kinds.count("turn") == 2 and kinds[-1] == "ended"
    partials = [m["data"]["text"] for m in received if m["event"] == "partial"]
    assert partials and all(b.startswith(a) for a, b in zip(partials, partials[1:], strict=False))
    assert other == []  # tenant B's dashboard sees nothing of tenant A's call


# --- many at once -------------------------------------------------------------------------------


def test_fifty_concurrent_sessions_all_complete_with_every_turn_stored(
    twilio, relay_a, number_a, tenant_a, fake_groq
):
    for kind in (RateLimit.Kind.CONCURRENT_CALLS, RateLimit.Kind.CALLS_PER_CALLER):
        RateLimit.objects.create(tenant=tenant_a, kind=kind, limit=100, window_seconds=3600)
    fake_groq.set_latency(ttft_ms=50, tokens_per_second=200)
    fake_groq.configure(answer_tokens=20)
    calls = [start_call(twilio, number_a, from_=f"+1555010{i:04d}") for i in range(50)]

    async def session(call_sid: str, socket_url: str) -> list[str]:
        client = RelayClient(socket_url)
        assert (await client.connect())[0]
        await client.setup(call_sid)
        answers = []
        # Questions of their own: every answer comes from the LLM, none from the answer cache.
        for question in (f"Do you fix boilers at number {call_sid}?", "How soon can you come?"):
            await client.prompt(question)
            answers.append(text_of(await client.answer(timeout=60)))
        await client.close()
        return answers

    async def all_sessions():
        return await asyncio.gather(*(session(sid, url) for sid, url, _ in calls))

    results = run(all_sessions)
    assert all(len(answers) == 2 and all(answers) for answers in results)
    with scopes_disabled():
        sids = [sid for sid, _, _ in calls]
        assert Turn.objects.filter(call__call_sid__in=sids).count() == 200
        assert (
            Turn.objects.filter(call__call_sid__in=sids, role="assistant", source="llm").count()
            == 100
        )
        assert Call.objects.filter(call_sid__in=sids, status=Call.Status.COMPLETED).count() == 50


def test_log_lines_of_a_session_carry_its_tenant_and_call_sid(twilio, relay_a, number_a):
    import io
    import logging

    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.send_raw(text="{broken")
        await client.send({"type": "error", "description": "Invalid message received"})
        await client.nothing_more(0.2)
        await client.close()

    try:
        run(conversation)
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    relay_lines = [line for line in lines if line["message"].startswith("relay:")]
    assert {line["message"] for line in relay_lines} >= {
        "relay: malformed JSON frame ignored",
        "relay: Twilio reported an error",
    }
    for line in relay_lines:
        assert (line["tenant"], line["call_sid"]) == ("acme", call_sid)


def test_an_interrupted_answer_is_announced_to_the_dashboard(
    twilio, relay_a, number_a, tenant_a, fake_groq
):
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=10)
    fake_groq.configure(answer_tokens=60)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(tenant_group(tenant_a.id), channel)
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Explain your pricing in detail.")
        first = await client.receive()
        await client.send({"type": "interrupt", "utteranceUntilInterrupt": first["token"]})
        await client.close()
        received = []
        while True:
            try:
                received.extend(unbatch(await asyncio.wait_for(layer.receive(channel), 1.0)))
            except TimeoutError:
                return first, received

    first, received = run(conversation)
    interrupted = [m for m in received if m["event"] == "interrupted"]
    assert len(interrupted) == 1
    turn = interrupted[0]["data"]["turn"]
    assert turn["interrupted"] is True and turn["heard_text"] == first["token"].strip()


def test_a_stream_cut_mid_answer_ends_the_talk_cycle_and_is_not_cached(
    twilio, relay_a, number_a, fake_groq
):
    fake_groq.queue_fault("cut", after_tokens=5)
    # Tokens slower than RELAY_TEXT_BATCH_MS, so that each is read before the cut. (Words that
    # arrived within the last read window before a cut are lost with the connection: aiohttp
    # drops what it buffered when the stream breaks.)
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=15)
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("What does a new boiler cost?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = run(conversation)
    assert frames[-1]["last"] is True  # the talk cycle is closed after what was received
    assert 2 <= len(frames) <= 6
    # What the model said before the cut, then a short apology instead of silence.
    said, _, closing = text_of(frames).partition(" " + CUT_SHORT)
    assert len(said.split()) == 5 and closing == ""
    turn = turns_of(call_sid)[-1]
    assert turn.source == "llm" and "stream broken" in turn.error
    assert turn.text == text_of(frames)

    # The next caller asking the same first question gets a fresh LLM answer, not the cut one.
    other_sid, other_socket, _ = start_call(twilio, number_a, from_="+15551230001")

    async def again():
        client = RelayClient(other_socket)
        await client.connect()
        await client.setup(other_sid)
        await client.prompt("What does a new boiler cost?")
        frames = await client.answer()
        await client.close()
        return frames

    run(again)
    assert turns_of(other_sid)[-1].source == "llm" and len(fake_groq.requests) == 2


def test_a_model_that_hangs_moves_on_to_the_fallback_model(
    twilio, relay_a, number_a, fake_groq, settings
):
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 0.5
    fake_groq.queue_fault("hang", model="llama-3.3-70b-versatile")
    fake_groq.queue_answer("The fallback model answers.", model="llama-3.1-8b-instant")
    call_sid, socket_url, _ = start_call(twilio, number_a)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Are you there?")
        frames = await client.answer()
        await client.close()
        return frames

    assert text_of(run(conversation)) == "The fallback model answers."
    turn = turns_of(call_sid)[-1]
    assert turn.model_used == "llama-3.1-8b-instant"
    assert "fallback_model:llama-3.1-8b-instant" in turn.fallbacks and "timeout" in turn.error


def test_the_signed_socket_url_is_rebuilt_behind_a_tls_proxy(settings):
    from calls.transports.signatures import websocket_public_url

    ws_scope = {
        "path": "/twilio/relay",
        "query_string": b"call=abc",
        "scheme": "ws",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"voice.example.com"),
        ],
    }
    assert websocket_public_url(ws_scope) == "ws://127.0.0.1:8000/twilio/relay?call=abc"
    settings.USE_X_FORWARDED_HOST = True  # TRUST_PROXY_HEADERS=true
    assert websocket_public_url(ws_scope) == "wss://voice.example.com/twilio/relay?call=abc"
    settings.PUBLIC_BASE_URL = "https://calls.example.org"
    assert websocket_public_url(ws_scope) == "wss://calls.example.org/twilio/relay?call=abc"


async def _ask_once(socket_url: str, call: Call, question: str) -> tuple[bool, list[dict]]:
    """Open the call's socket, ask one question; whether the handshake took the kept call."""
    client = RelayClient(socket_url)
    assert (await client.connect())[0]
    taken = call.id not in answered._kept
    await client.setup(call.call_sid)
    await client.prompt(question)
    frames = await client.answer()
    await client.close()
    return taken, frames


def test_sockets_of_calls_answered_here_take_the_call_their_webhook_kept(
    twilio, relay_a, number_a, fake_groq
):
    for question in ("My sink is leaking.", "My boiler is cold."):  # one call after another
        fake_groq.queue_answer("A plumber can come tomorrow.")
        call_sid, socket_url, _ = start_call(twilio, number_a)
        call = call_of(call_sid)
        assert call.id in answered._kept  # kept by the webhook for its socket

        taken, frames = run(_ask_once, socket_url, call, question)
        assert taken and text_of(frames) == "A plumber can come tomorrow."
        assert [t.text for t in turns_of(call_sid)] == [question, "A plumber can come tomorrow."]
        assert call_of(call_sid).server  # the socket's process holds it


def test_a_call_ended_elsewhere_before_its_socket_opened_is_refused_its_socket(
    twilio, relay_a, number_a
):
    call_sid, socket_url, _ = start_call(twilio, number_a)
    kept_here = dict(answered._kept)
    # Another process took Twilio's status callback: this one still keeps the call as answered.
    response = twilio.status(call_sid, number_a.number, "completed", sequence=1, duration=3)
    assert response.status == 204
    answered._kept.update(kept_here)

    async def attempt() -> bool:
        client = RelayClient(socket_url)
        return (await client.connect())[0]

    assert run(attempt) is False  # the handshake is refused, although the call was kept
    call = call_of(call_sid)
    assert call.status == Call.Status.COMPLETED and call.error == ""
    assert turns_of(call_sid) == []


def test_a_call_that_ends_between_its_handshake_and_setup_is_closed_without_a_conversation(
    twilio, relay_a, number_a
):
    """Read from the database at its handshake (the socket reached another process than its
    webhook), the call is found over when the conversation starts."""
    call_sid, socket_url, _ = start_call(twilio, number_a)
    answered._kept.clear()
    with scopes_disabled():  # as if another process had answered its webhook
        Call.objects.filter(call_sid=call_sid).update(server="another-host:1:0")

    @sync_to_async
    def ended_in_the_webhooks_process() -> None:
        with scopes_disabled():
            Call.objects.filter(call_sid=call_sid).update(status=Call.Status.COMPLETED)

    async def attempt():
        client = RelayClient(socket_url)
        connected = (await client.connect())[0]
        await ended_in_the_webhooks_process()
        await client.setup(call_sid)
        return connected, await client.communicator.receive_output(timeout=5)

    connected, closed = run(attempt)
    assert connected and closed["type"] == "websocket.close"
    call = call_of(call_sid)
    assert call.status == Call.Status.COMPLETED and call.error == ""
    assert call.server == "another-host:1:0"  # not taken over by this process
    assert turns_of(call_sid) == []
