"""A whole gather-mode call with every part real: signed webhooks, the groq SDK against a
Groq-compatible server, a Celery worker process making speech with espeak-ng, Django storage, and
call events on the channel layer."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, SpeechAudio
from assistants.services import assistant_prepare_greeting
from calls.events import STAFF_GROUP, tenant_group, unbatch
from calls.models import Call, Turn
from config.celery import app
from devtools.testing import tasks_queued_to

pytestmark = pytest.mark.django_db(transaction=True)
WAIT_SECONDS = 30


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


def _use_espeak(assistant: AssistantConfig) -> AssistantConfig:
    with scopes_disabled():
        assistant.tts_engine = AssistantConfig.TTSEngine.ESPEAK
        assistant.save()
    return assistant


def _wait_for_file(audio: SpeechAudio, worker) -> SpeechAudio:
    deadline = time.monotonic() + WAIT_SECONDS
    with scopes_disabled():
        while time.monotonic() < deadline:
            audio = SpeechAudio.objects.get(pk=audio.pk)
            if audio.file or audio.error:
                return audio
            time.sleep(0.05)
    raise AssertionError(f"no audio in {WAIT_SECONDS} s:\n{worker.log()}")


def _turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


class Listener:
    """A channel on the real channel layer, subscribed to some dashboard groups."""

    def __init__(self, *groups: str) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        self.groups = groups
        for group in groups:
            async_to_sync(self.layer.group_add)(group, self.channel)

    def drain(self, first_timeout: float = 3.0) -> list[dict]:
        async def receive_all() -> list[dict]:
            messages, timeout = [], first_timeout
            while True:
                try:
                    messages.extend(
                        unbatch(await asyncio.wait_for(self.layer.receive(self.channel), timeout))
                    )
                except TimeoutError:
                    return messages
                timeout = 0.5  # after the first, only what is already there

        return async_to_sync(receive_all)()

    def close(self) -> None:
        for group in self.groups:
            async_to_sync(self.layer.group_discard)(group, self.channel)


def test_a_call_from_greeting_to_goodbye(
    celery_worker_process, media_root, fake_groq, twilio, number_a, assistant_a, tenant_a, client
):
    # Saving the assistant makes its greeting before anyone calls.
    _use_espeak(assistant_a)
    with scopes_disabled():
        greeting = assistant_prepare_greeting(assistant=assistant_a)
    greeting = _wait_for_file(greeting, celery_worker_process)
    assert greeting.file and not greeting.error

    tenant_listener, staff_listener = Listener(tenant_group(tenant_a.id)), Listener(STAFF_GROUP)
    try:
        call_sid, hello = twilio.voice(number_a.number)
        # The greeting plays as audio, from an absolute URL Twilio can fetch.
        [greeting_url] = hello.texts("Play")
        assert greeting_url.startswith("http://testserver/media/tts/")
        audio = client.get(urlsplit(greeting_url).path)
        assert audio.status_code == 200
        assert b"".join(audio.streaming_content)[:4] == b"RIFF"

        fake_groq.queue_answer("A plumber can come tomorrow at nine. Would that suit you?")
        answer = twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")
        # Each sentence was made by the worker while the LLM was still talking, and plays: in
        # one reply, or the first at once and the second from the continuation Twilio fetches.
        plays, said = answer.texts("Play"), answer.texts("Say")
        for url in answer.texts("Redirect"):
            params = twilio.params(call_sid, to=number_a.number, CallStatus="in-progress")
            rest = twilio.post(url.removeprefix("http://testserver"), params)
            plays, said = plays + rest.texts("Play"), said + rest.texts("Say")
        assert len(plays) == 2 and said == []
        assert all(url.startswith("http://testserver/media/tts/") for url in plays)

        faq = twilio.gather(call_sid, number_a.number, "When are you open?")
        assert len(faq.texts("Play")) == 1

        twilio.status(call_sid, number_a.number, "completed", sequence=5, duration=42)
        events, staff_events = tenant_listener.drain(), staff_listener.drain()
    finally:
        tenant_listener.close()
        staff_listener.close()

    caller, assistant, caller_2, faq_turn = _turns(call_sid)
    assert assistant.source == "llm" and assistant.model_used == "llama-3.3-70b-versatile"
    assert assistant.audio_urls == plays
    assert assistant.first_audio_ms is not None
    assert assistant.llm_first_token_ms <= assistant.llm_done_ms <= assistant.response_sent_ms
    assert "tts:say" not in assistant.fallbacks
    assert faq_turn.source == "faq"
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
    assert (call.status, call.duration_seconds) == ("completed", 42)

    # Every event reached both the tenant's group and the staff group, in order.
    assert staff_events == events
    kinds = [e["event"] for e in events]
    assert kinds == ["started", *["turn"] * 4, "ended"]
    texts = [e["data"]["turn"]["text"] for e in events if e["event"] == "turn"]
    assert texts == [
        "Can someone fix my boiler?",
        "A plumber can come tomorrow at nine. Would that suit you?",
        "When are you open?",
        "We are open from eight to six, Monday to Friday.",
    ]
    assert {e["tenant"] for e in events} == {str(tenant_a.id)}


def test_a_repeated_sentence_is_made_once_and_shared_by_calls(
    celery_worker_process, media_root, fake_groq, twilio, number_a, assistant_a
):
    _use_espeak(assistant_a)
    first_sid, _ = twilio.voice(number_a.number)
    first = twilio.gather(first_sid, number_a.number, "When are you open?")
    second_sid, _ = twilio.voice(number_a.number)
    second = twilio.gather(second_sid, number_a.number, "When are you open?")

    assert first.texts("Play") == second.texts("Play") and len(first.texts("Play")) == 1
    with scopes_disabled():
        rows = SpeechAudio.objects.filter(text="We are open from eight to six, Monday to Friday.")
        assert rows.count() == 1


def test_speech_for_another_tenant_is_its_own_file(
    celery_worker_process, media_root, twilio, number_a, number_b, assistant_a, assistant_b
):
    _use_espeak(assistant_a)
    _use_espeak(assistant_b)
    with scopes_disabled():
        assistant_b.greeting = assistant_a.greeting
        assistant_b.save()
        a = _wait_for_file(assistant_prepare_greeting(assistant=assistant_a), celery_worker_process)
        b = _wait_for_file(assistant_prepare_greeting(assistant=assistant_b), celery_worker_process)
    assert a.tenant_id != b.tenant_id and a.file != b.file
    _, to_a = twilio.voice(number_a.number)
    _, to_b = twilio.voice(number_b.number)
    assert to_a.texts("Play") != to_b.texts("Play")


def test_a_failing_speech_engine_falls_back_to_twilios_voice(
    celery_worker_process, media_root, fake_groq, twilio, number_a, assistant_a, settings
):
    # gTTS cannot reach Google from here: the worker stores the error, the caller hears <Say>.
    with scopes_disabled():
        assistant_a.tts_engine = AssistantConfig.TTSEngine.GTTS
        assistant_a.save()
    fake_groq.queue_answer("Our engineers are all certified.")
    call_sid, _ = twilio.voice(number_a.number)
    answer = twilio.gather(call_sid, number_a.number, "Are your engineers qualified?")

    assert answer.texts("Play") == []
    assert answer.said == "Our engineers are all certified."
    turn = _turns(call_sid)[-1]
    assert "tts:say" in turn.fallbacks
    with scopes_disabled():
        row = SpeechAudio.objects.get(text="Our engineers are all certified.")
    assert row.file == "" and row.error


@pytest.fixture
def nobody_consumes():
    """Send this test's tasks to a queue no worker reads (a worker that is down or busy)."""
    with tasks_queued_to(f"unconsumed-{uuid.uuid4().hex[:12]}") as queue:
        yield queue
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def test_speech_not_ready_in_time_is_said_by_twilio_and_still_made_later(
    nobody_consumes, media_root, fake_groq, twilio, number_a, assistant_a, settings
):
    settings.TTS_WAIT_SECONDS = 0.3
    _use_espeak(assistant_a)
    fake_groq.queue_answer("We can send someone this afternoon.")
    call_sid, _ = twilio.voice(number_a.number)
    started = time.monotonic()
    answer = twilio.gather(call_sid, number_a.number, "Can you come today?")
    assert time.monotonic() - started < settings.WEBHOOK_DEADLINE_SECONDS

    assert answer.texts("Play") == []
    assert answer.said == "We can send someone this afternoon."
    assert "tts:say" in _turns(call_sid)[-1].fallbacks
    # The job is not lost: its row waits, and its message waits in the broker for a worker.
    with scopes_disabled():
        row = SpeechAudio.objects.get(text="We can send someone this afternoon.")
    assert row.file == "" and row.error == ""
    with app.connection_for_write() as connection:
        _, waiting, _ = connection.default_channel.queue_declare(nobody_consumes, passive=True)
    assert waiting >= 1
