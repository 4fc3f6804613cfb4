"""Gather mode's early reply: the first sentence plays as soon as its audio is ready, and Twilio
fetches the rest from a signed continuation that serves only its own call.

Which sentence's audio is ready is set at the wire of the speech cache (a stored file, as the
speech worker leaves it); the rest of the call is real: signed webhooks, the groq SDK against the
fake Groq server, the shared cache.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, SpeechAudio
from assistants.speech import speech_key
from calls.models import Turn

pytestmark = pytest.mark.django_db

FIRST = "A plumber can come tomorrow at nine."
SECOND = "Would that suit you?"
ANSWER = f"{FIRST} {SECOND}"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def speaking_a(assistant_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.tts_engine = AssistantConfig.TTSEngine.ESPEAK
        assistant_a.save()
    return assistant_a


def _audio_ready(assistant: AssistantConfig, text: str) -> str:
    """The sentence's audio as the speech worker leaves it: a row with its file."""
    key = speech_key(
        tenant_id=assistant.tenant_id, engine="espeak", voice="", language="en-US", text=text
    )
    name = f"tts/{key[:16]}.wav"
    with scopes_disabled():
        updated = SpeechAudio.objects.filter(key=key).update(file=name)
        if not updated:
            SpeechAudio.objects.create(
                tenant_id=assistant.tenant_id,
                key=key,
                engine="espeak",
                voice="",
                language="en-US",
                text=text,
                file=name,
            )
    return f"http://testserver/media/{name}"


def _assistant_turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(
            Turn.objects.filter(call__call_sid=call_sid, role=Turn.Role.ASSISTANT).order_by(
                "sequence"
            )
        )


def _continuation_path(response) -> str:
    [url] = response.texts("Redirect")
    parts = urlsplit(url)
    assert parts.path == "/twilio/gather-continue"
    return f"{parts.path}?{parts.query}"


def _continue(twilio, path: str, call_sid: str, number: str):
    params = twilio.params(call_sid, to=number, CallStatus="in-progress")
    return twilio.post(path, params)


def test_the_first_sentence_plays_at_once_and_the_rest_follows(
    twilio, number_a, speaking_a, fake_groq
):
    first_url = _audio_ready(speaking_a, FIRST)
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    early = twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")

    # Only the first sentence, then Twilio is sent for the rest; nobody listens yet.
    assert early.texts("Play") == [first_url] and early.texts("Say") == []
    assert not early.has("Gather")
    path = _continuation_path(early)
    # The whole answer is stored before its first sentence plays.
    [turn] = _assistant_turns(call_sid)
    assert (turn.text, turn.audio_urls, turn.interrupted) == (ANSWER, [first_url], False)
    assert turn.first_audio_ms is not None

    second_url = _audio_ready(speaking_a, SECOND)  # made meanwhile
    rest = _continue(twilio, path, call_sid, number_a.number)
    assert rest.status == 200
    assert rest.texts("Play") == [second_url] and rest.has("Gather")
    [turn] = _assistant_turns(call_sid)
    assert turn.audio_urls == [first_url, second_url] and "tts:say" not in turn.fallbacks

    # The conversation goes on with the whole answer in its history.
    fake_groq.queue_answer("Done.")
    twilio.gather(call_sid, number_a.number, "Yes please.")
    assert {"role": "assistant", "content": ANSWER} in fake_groq.requests[-1].messages


def test_the_rest_not_ready_in_time_is_said_by_twilio(
    twilio, number_a, speaking_a, fake_groq, settings
):
    settings.TTS_WAIT_SECONDS = 0.2
    _audio_ready(speaking_a, FIRST)
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    path = _continuation_path(twilio.gather(call_sid, number_a.number, "Boiler?"))

    rest = _continue(twilio, path, call_sid, number_a.number)
    assert rest.texts("Play") == [] and rest.said == SECOND and rest.has("Gather")
    [turn] = _assistant_turns(call_sid)
    assert "tts:say" in turn.fallbacks


def test_a_caller_who_hangs_up_before_the_rest_keeps_what_they_heard(
    twilio, number_a, speaking_a, fake_groq
):
    _audio_ready(speaking_a, FIRST)
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    path = _continuation_path(twilio.gather(call_sid, number_a.number, "Boiler?"))
    twilio.status(call_sid, number_a.number, "completed", sequence=3, duration=9)

    [turn] = _assistant_turns(call_sid)
    assert (turn.text, turn.interrupted, turn.heard_text) == (ANSWER, True, FIRST)
    # Twilio will not fetch the rest of an ended call; if it did, it would just hang up.
    late = _continue(twilio, path, call_sid, number_a.number)
    assert late.status == 200 and late.has("Hangup") and not late.has("Play")


def test_a_played_continuation_leaves_the_turn_whole_when_the_call_ends(
    twilio, number_a, speaking_a, fake_groq
):
    _audio_ready(speaking_a, FIRST)
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    path = _continuation_path(twilio.gather(call_sid, number_a.number, "Boiler?"))
    _continue(twilio, path, call_sid, number_a.number)
    twilio.status(call_sid, number_a.number, "completed", sequence=3, duration=9)
    [turn] = _assistant_turns(call_sid)
    assert (turn.interrupted, turn.heard_text) == (False, "")


def test_a_continuation_serves_only_its_own_call(
    twilio, number_a, number_b, speaking_a, assistant_b, fake_groq
):
    _audio_ready(speaking_a, FIRST)
    fake_groq.set_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    path = _continuation_path(twilio.gather(call_sid, number_a.number, "Boiler?"))
    other_sid, _ = twilio.voice(number_a.number)  # another call of the same tenant
    outsider_sid, _ = twilio.voice(number_b.number)  # a call of another tenant

    for sid, number in ((other_sid, number_a.number), (outsider_sid, number_b.number)):
        refused = _continue(twilio, path, sid, number)
        assert refused.status == 404 and SECOND.encode() not in refused.body
    token = path.split("c=", 1)[1]
    tampered = path.replace(token, token[:-3] + ("abc" if token[-3:] != "abc" else "xyz"))
    assert _continue(twilio, tampered, call_sid, number_a.number).status == 404
    assert _continue(twilio, "/twilio/gather-continue", call_sid, number_a.number).status == 404
    # An unsigned request is refused before anything is read.
    params = twilio.params(call_sid, to=number_a.number)
    assert twilio.post(path, params, signature="forged").status == 403
    # The link still works for its own call.
    assert _continue(twilio, path, call_sid, number_a.number).said == SECOND


def test_an_answer_whose_audio_is_all_ready_is_played_in_one_reply(
    twilio, number_a, speaking_a, fake_groq
):
    urls = [_audio_ready(speaking_a, FIRST), _audio_ready(speaking_a, SECOND)]
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    reply = twilio.gather(call_sid, number_a.number, "Boiler?")
    assert reply.texts("Play") == urls and reply.has("Gather") and not reply.has("Redirect")


def test_without_early_replies_the_reply_waits_for_all_audio(
    twilio, number_a, speaking_a, fake_groq, settings
):
    settings.GATHER_EARLY_REPLY = False
    settings.TTS_WAIT_SECONDS = 0.2
    first_url = _audio_ready(speaking_a, FIRST)
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    reply = twilio.gather(call_sid, number_a.number, "Boiler?")
    assert reply.texts("Play") == [first_url] and reply.said == SECOND
    assert reply.has("Gather") and not reply.has("Redirect")
    [turn] = _assistant_turns(call_sid)
    assert "tts:say" in turn.fallbacks


def test_a_first_sentence_not_ready_in_time_means_one_reply_in_twilios_voice(
    twilio, number_a, speaking_a, fake_groq, settings
):
    settings.TTS_WAIT_SECONDS = 0.2
    fake_groq.queue_answer(ANSWER)
    call_sid, _ = twilio.voice(number_a.number)
    reply = twilio.gather(call_sid, number_a.number, "Boiler?")
    assert reply.texts("Play") == [] and reply.said == ANSWER
    assert reply.has("Gather") and not reply.has("Redirect")
