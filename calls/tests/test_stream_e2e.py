"""Stream mode end to end: a real daphne process on the test database; Groq and Deepgram replaced
at the wire by loopback servers speaking their protocols; Twilio's side played over real HTTP
and a real Media Streams WebSocket, with espeak-ng speech sent as mu-law frames in real time.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
import wave
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
import websockets
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.events import tenant_group, unbatch
from calls.models import Call, Turn
from calls.transports.signatures import sign
from devtools.media_simulator import (
    StreamTurn,
    TwilioMediaStream,
    parse_stream,
    run_stream,
    spoken,
)
from devtools.simulator import TwilioSimulator, new_call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stream_a(assistant_a, number_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.STREAM
        assistant_a.greeting = "Acme Plumbing."
        assistant_a.save()
    return assistant_a


def stored_once_closed(call_sid: str) -> tuple[Call, list[Turn]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for connection in connections.all():
            connection.close()  # read what daphne committed
        with scopes_disabled():
            call = Call.objects.get(call_sid=call_sid)
            if call.status == Call.Status.COMPLETED:
                return call, list(call.turns.order_by("sequence"))
        time.sleep(0.1)
    raise AssertionError(f"call {call_sid} was not closed")


def play(daphne_server, number, **options):
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    try:
        return run_stream(simulator, to=number.number, from_="+15551234567", **options)
    finally:
        simulator.close()


def test_a_call_recognised_by_assemblyai(daphne_server, stream_a, number_a, fake_deepgram):
    with scopes_disabled():
        stream_a.recognition_provider = AssistantConfig.RecognitionProvider.ASSEMBLYAI
        stream_a.recognition_model = ""
        stream_a.save()
    fake_deepgram.queue_transcript("When are you open?")

    call = play(daphne_server, number_a, utterances=["When are you open?"])

    assert call.refused == "" and len(call.turns[0].audio) > 8000, daphne_server.log()
    [listen] = fake_deepgram.listens
    assert listen.params["speech_model"] == "universal-streaming-english"
    _, turns = stored_once_closed(call.call_sid)
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "When are you open?"),
        ("assistant", "We are open from eight to six, Monday to Friday."),
    ]


def test_assemblyai_hears_with_the_tenants_own_key(
    daphne_server, stream_a, number_a, tenant_a, fake_deepgram
):
    with scopes_disabled():
        stream_a.recognition_provider = AssistantConfig.RecognitionProvider.ASSEMBLYAI
        stream_a.recognition_model = ""
        stream_a.voice_provider = "espeak"  # with the Aura voice name left in its settings
        stream_a.save()
        tenant_a.set_assemblyai_api_key("aai_tenant_a_own_key")
        tenant_a.save()
    fake_deepgram.configure(api_key="aai_tenant_a_own_key")  # the platform's key is refused
    fake_deepgram.queue_transcript("When are you open?")

    call = play(daphne_server, number_a, utterances=["When are you open?"])

    assert call.refused == "" and len(call.turns[0].audio) > 8000, daphne_server.log()
    assert call.greeting.audio and fake_deepgram.spoken == []  # espeak-ng spoke
    _, turns = stored_once_closed(call.call_sid)
    assert [t.text for t in turns] == [
        "When are you open?",
        "We are open from eight to six, Monday to Friday.",
    ]


def test_a_stream_call_of_several_turns_through_daphne(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    fake_deepgram.queue_transcript("When are you open?", "Can you fix a leaking tap?")
    fake_groq.queue_answer("Yes, we can fix it today. Shall I send someone?")

    call = play(
        daphne_server, number_a, utterances=["When are you open?", "Can you fix a leaking tap?"]
    )

    assert call.refused == "", daphne_server.log()
    assert call.greeting.audio, "the greeting was spoken"
    faq, llm_turn = call.turns
    for turn in call.turns:
        assert len(turn.audio) > 8000, "at least a second of the assistant's voice"
        assert not turn.cleared
        assert turn.voice_to_voice_ms is not None
        assert turn.marks >= 1
    assert llm_turn.marks == 2  # a mark after each sentence, echoed once played
    # The audio comes in messages of up to 100 ms, not one per 20 ms frame.
    for turn in call.turns:
        assert turn.media_messages <= len(turn.audio) / 800 + 2 * turn.marks + 1
    [listen] = fake_deepgram.listens
    assert listen.params["encoding"] == "mulaw" and listen.params["sample_rate"] == "8000"
    assert listen.params["endpointing"] == "300" and listen.params["interim_results"] == "true"
    assert [t.transcript for t in listen.turns] == [
        "When are you open?",
        "Can you fix a leaking tap?",
    ]
    assert fake_deepgram.spoken == [
        "Acme Plumbing.",
        "We are open from eight to six, Monday to Friday.",
        "Yes, we can fix it today.",
        "Shall I send someone?",
    ]

    record, turns = stored_once_closed(call.call_sid)
    assert (record.mode, record.outcome) == ("stream", "completed")
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "When are you open?"),
        ("assistant", "We are open from eight to six, Monday to Friday."),
        ("caller", "Can you fix a leaking tap?"),
        ("assistant", "Yes, we can fix it today. Shall I send someone?"),
    ]
    answer = turns[3]
    assert answer.source == "llm" and not answer.interrupted
    # Timings from the moment the caller stopped talking, in the order they happen.
    assert 0 < answer.transcript_final_ms <= answer.llm_first_token_ms
    # ... which is where the voice ended, not where the detector's hangover did: the final
    # came the endpointing silence (and the stand-in's own time) after it.
    heard = listen.turns[1]
    assert answer.transcript_final_ms >= (heard.final_sent_at - heard.speech_ended_at) * 1000 - 25
    assert answer.llm_first_token_ms <= answer.first_audio_ms <= answer.response_sent_ms
    assert answer.response_sent_ms <= answer.last_token_sent_ms


LONG_ANSWER = (
    "Sure. Let me tell you about every single service we offer, from leaking taps and blocked "
    "drains to boilers, radiators, showers, toilets and complete bathroom installations. "
    "We also do emergency call outs at night, at weekends and on bank holidays, anywhere in "
    "the city and the towns around it, for a fixed fee that we tell you before we come."
)


def test_the_caller_talks_over_an_answer_and_only_what_was_heard_is_kept(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    fake_deepgram.queue_transcript("Tell me about your services.", "Stop, just the price please.")
    fake_groq.queue_answer(LONG_ANSWER)
    fake_groq.queue_answer("A visit is sixty pounds.")
    fake_groq.set_latency(tokens_per_second=12)  # the model is still talking when cut off

    call = play(
        daphne_server,
        number_a,
        utterances=["Tell me about your services.", "Stop, just the price please."],
        barge_in_after_ms=2500,
    )

    assert call.refused == "", daphne_server.log()
    first, second = call.turns
    assert second.cleared, "talking over the answer told Twilio to drop what was not played"
    assert first.marks == 1  # "Sure." was played; the long sentence was not
    record, turns = stored_once_closed(call.call_sid)
    cut = turns[1]
    assert cut.role == "assistant" and cut.interrupted
    assert cut.heard_text == "Sure."
    # Said (its audio begun) but not heard: the long sentence; never said: the last one.
    assert cut.text == LONG_ANSWER[: LONG_ANSWER.index(" We also")]
    assert [(t.role, t.text) for t in turns[2:]] == [
        ("caller", "Stop, just the price please."),
        ("assistant", "A visit is sixty pounds."),
    ]
    # The LLM stream of the cut answer was closed before it was complete, and its later
    # sentences never spoken.
    cut_request, _ = fake_groq.requests
    assert cut_request.client_closed
    assert not any(s.startswith("We also") for s in fake_deepgram.spoken)
    assert record.outcome == "completed"


def test_the_transfer_digit_hands_the_caller_to_a_human(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    fake_deepgram.queue_transcript("When are you open?")

    call = play(daphne_server, number_a, utterances=["When are you open?"], press="0")

    assert call.closed_by_platform, daphne_server.log()
    assert call.action_status == 200 and call.dialled == "+15005550001"
    record, turns = stored_once_closed(call.call_sid)
    assert record.outcome == "transferred"
    assert [t.role for t in turns] == ["caller", "assistant"]


@pytest.mark.parametrize("fault", ["drop", "hang"])
def test_recognition_that_fails_mid_call_ends_the_call_with_an_apology_and_keeps_the_turns(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram, fault
):
    fake_deepgram.queue_transcript("When are you open?", "And on Sundays?")
    fake_deepgram.configure(listen_fault=fault, fault_after_turns=1)

    call = play(
        daphne_server, number_a, utterances=["When are you open?", "And on Sundays?"], timeout=15
    )

    assert call.closed_by_platform, daphne_server.log()
    assert call.action_status == 200
    assert [s.kind for s in call.action_said] == ["say"]
    assert "can't hear you" in call.action_said[0].text
    record, turns = stored_once_closed(call.call_sid)
    assert record.outcome == "error" and "recognition" in record.error
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "When are you open?"),
        ("assistant", "We are open from eight to six, Monday to Friday."),
    ]


@pytest.mark.parametrize("fault", ["drop", "hang"])
def test_a_voice_that_fails_mid_call_is_replaced_by_the_local_engine(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram, fault
):
    fake_deepgram.queue_transcript("When are you open?")
    fake_deepgram.configure(speak_fault=fault, fault_after_turns=1)  # the greeting is spoken

    call = play(daphne_server, number_a, utterances=["When are you open?"], timeout=15)

    assert call.refused == "", daphne_server.log()
    [answer_audio] = call.turns
    assert len(answer_audio.audio) > 8000, "the answer was heard, in the local voice"
    _, turns = stored_once_closed(call.call_sid)
    answer = turns[1]
    assert answer.text == "We are open from eight to six, Monday to Friday."
    assert answer.fallbacks == ["tts:espeak"] and "speech" in answer.error


def answered_stream(daphne_server, number) -> tuple[str, str, dict[str, str]]:
    """(CallSid, socket URL, <Parameter>s) of a call the voice webhook connected to a stream."""
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    call_sid, params = new_call(to=number.number, from_="+15551230000")
    try:
        status, body, _ = simulator.post("/twilio/voice", {**params, "CallStatus": "ringing"})
    finally:
        simulator.close()
    assert status == 200
    socket_url, _, parameters = parse_stream(body)
    return call_sid, socket_url, parameters


async def handshake(socket_url: str, signature: str) -> int:
    try:
        async with websockets.connect(
            socket_url, additional_headers={"X-Twilio-Signature": signature}
        ):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_a_handshake_without_the_right_signature_is_refused(daphne_server, stream_a, number_a):
    _, socket_url, _ = answered_stream(daphne_server, number_a)

    assert asyncio.run(handshake(socket_url, "")) == 403
    wrong = sign(url=socket_url, params={}, auth_token="not-the-token")
    assert asyncio.run(handshake(socket_url, wrong)) == 403
    # Another call's URL with this one's signature: the signature covers the call id.
    other = socket_url.replace("call=", "call=0")
    right = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
    assert asyncio.run(handshake(other, right)) == 403
    assert asyncio.run(handshake(socket_url, right)) == 101


def test_one_live_socket_per_call(daphne_server, stream_a, number_a):
    """A replayed handshake is refused while the first socket holds the call."""
    _, socket_url, _ = answered_stream(daphne_server, number_a)
    right = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)

    async def twice() -> tuple[int, int]:
        async with websockets.connect(socket_url, additional_headers={"X-Twilio-Signature": right}):
            return 101, await handshake(socket_url, right)

    assert asyncio.run(twice()) == (101, 403)


def test_another_tenants_call_is_refused(daphne_server, stream_a, number_a, tenant_b):
    """Tenant B signs with its own Twilio account's token: it cannot open tenant A's stream."""
    with scopes_disabled():
        tenant_b.set_twilio_auth_token("tenant-b-own-token")
        tenant_b.save()
    _, socket_url, _ = answered_stream(daphne_server, number_a)

    signed_by_b = sign(url=socket_url, params={}, auth_token="tenant-b-own-token")
    assert asyncio.run(handshake(socket_url, signed_by_b)) == 403


def test_a_start_that_names_another_call_closes_the_socket(daphne_server, stream_a, number_a):
    _, socket_url, parameters = answered_stream(daphne_server, number_a)
    other_sid, _, _ = answered_stream(daphne_server, number_a)

    async def start_other() -> int | None:
        signature = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
        async with websockets.connect(
            socket_url, additional_headers={"X-Twilio-Signature": signature}
        ) as socket:
            twilio = TwilioMediaStream(socket, stream_sid="MZ" + uuid.uuid4().hex)
            await twilio.send("start", start={"callSid": other_sid, "customParameters": parameters})
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 10)
            return socket.close_code

    assert asyncio.run(start_other()) == 4404


def test_malformed_oversized_and_out_of_order_frames_are_skipped_and_the_call_goes_on(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    fake_deepgram.queue_transcript("When are you open?")
    call_sid, socket_url, parameters = answered_stream(daphne_server, number_a)
    line = asyncio.run(spoken("When are you open?"))

    async def conversation() -> StreamTurn:
        signature = sign(url=socket_url, params={}, auth_token=settings.TWILIO_AUTH_TOKEN)
        async with websockets.connect(
            socket_url, additional_headers={"X-Twilio-Signature": signature}, max_size=None
        ) as socket:
            twilio = TwilioMediaStream(socket, stream_sid="MZ" + uuid.uuid4().hex)
            payload = base64.b64encode(b"\x00" * 160).decode()
            # Before the session: media is skipped, not fed to recognition.
            await twilio.send("media", media={"payload": payload})
            await twilio.send(
                "start",
                start={
                    "callSid": call_sid,
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                },
            )
            await socket.send("{not json")
            await socket.send(json.dumps(["an", "array"]))
            await socket.send(json.dumps({"event": "no-such-event"}))
            await socket.send(json.dumps({"event": "media", "media": "x" * 20000}))  # oversized
            await socket.send(b"\x00\x01binary")
            await twilio.send("media", media={"payload": "not base64!"})
            await twilio.send("media", media={"payload": base64.b64encode(b"\x00" * 5000).decode()})
            await twilio.send("media", media=["not", "an", "object"])
            await twilio.send("mark", mark="no name")
            await twilio.send("dtmf", dtmf={"digit": None})
            # Out of order: a late frame with an old sequence number (a loud one) is skipped.
            late = {
                "event": "media",
                "sequenceNumber": "1",
                "streamSid": twilio.stream_sid,
                "media": {"payload": base64.b64encode(b"\x00" * 160).decode()},
            }
            await socket.send(json.dumps(late))
            async with twilio.running():
                twilio.turn = StreamTurn(caller="")
                await twilio.assistant_done(15)
                turn = twilio.turn = StreamTurn(caller="When are you open?")
                await twilio.say(line)
                await twilio.assistant_done(15)
                await twilio.send("stop", stop={})
                return turn

    turn = asyncio.run(conversation())

    assert len(turn.audio) > 8000, daphne_server.log()
    record, turns = stored_once_closed_after_stop(daphne_server, call_sid)
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "When are you open?"),
        ("assistant", "We are open from eight to six, Monday to Friday."),
    ]
    assert httpx.get(daphne_server.base_url + "/healthz").status_code == 200


def stored_once_closed_after_stop(daphne_server, call_sid: str) -> tuple[Call, list[Turn]]:
    """Twilio's status callback after the stream stopped, then what was stored."""
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
    try:
        simulator.post(
            "/twilio/status",
            {
                "CallSid": call_sid,
                "To": call.to_number,
                "From": call.from_number,
                "CallStatus": "completed",
                "CallDuration": "5",
            },
        )
    finally:
        simulator.close()
    return stored_once_closed(call_sid)


def test_simulate_call_stream_prints_each_turn_and_saves_its_audio(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram, tmp_path
):
    fake_deepgram.queue_transcript("Which areas do you cover?")
    fake_groq.queue_answer("We cover the whole city.")
    out = io.StringIO()
    call_command(
        "simulate_call",
        "--stream",
        "--url",
        daphne_server.base_url,
        "--to",
        number_a.number,
        "--say",
        "Which areas do you cover?",
        "--save-audio",
        str(tmp_path),
        stdout=out,
    )
    text = out.getvalue()
    assert "caller:    Which areas do you cover?" in text
    assert "voice to voice" in text and "marks" in text
    assert "stored: status=completed outcome=completed" in text
    assert "transcript final" in text and "last audio sent" in text
    [wav] = tmp_path.glob("*-turn1.wav")
    with wave.open(str(wav)) as saved:
        assert saved.getframerate() == 8000 and saved.getnframes() > 8000


def test_the_dashboard_sees_the_callers_words_while_they_are_heard(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    line = "Can you fix a leaking tap on Friday morning?"
    fake_deepgram.queue_transcript(line)
    layer = get_channel_layer()

    async def watch(call: Future) -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add(tenant_group(number_a.tenant_id), channel)
        seen = []
        while not call.done():
            try:
                seen.extend(unbatch(await asyncio.wait_for(layer.receive(channel), 0.5)))
            except TimeoutError:
                continue
        return seen

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(play, daphne_server, number_a, utterances=[line])
        seen = asyncio.run(watch(call))
    assert call.result().refused == ""
    partials = [m["data"]["text"] for m in seen if m["event"] == "partial"]
    assert partials and all(line.startswith(text) for text in partials)
    assert len(partials[0]) < len(line)  # shown before the caller had finished
    assert any(m["event"] == "partial" and m["data"]["role"] == "caller" for m in seen)


def test_an_faq_answer_said_again_reuses_its_audio(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    fake_deepgram.queue_transcript("When are you open?", "when are you open")

    call = play(daphne_server, number_a, utterances=["When are you open?", "When are you open?"])

    first, again = call.turns
    assert len(again.audio) > 8000 and abs(len(again.audio) - len(first.audio)) < 1600
    faq = "We are open from eight to six, Monday to Friday."
    assert fake_deepgram.spoken.count(faq) == 1  # made once, played twice

    # The kept audio comes back whole, yet goes out paced: the answer counts as sent when its
    # first message went, a second and more before its last.
    _, turns = stored_once_closed(call.call_sid)
    reused = turns[3]
    assert reused.text == faq
    assert reused.last_token_sent_ms - reused.response_sent_ms > 1000
