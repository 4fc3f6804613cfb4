"""Stream mode's providers against the loopback Deepgram stand-in (real WebSockets), and the
audio helpers and voice-activity detector on real espeak-ng speech."""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

from devtools.fake_deepgram import tone
from devtools.media_simulator import spoken
from providers import audio, recognition
from providers.recognition.deepgram import listen_url
from providers.recognition.vad import SpeechDetector
from providers.speech import TTSError
from providers.speech.streaming import VoiceSettings, get_streaming_voice

KEY = "dg_test_fake_deepgram_key"
SILENCE_SECOND = audio.SILENCE * audio.SAMPLE_RATE


def test_the_mulaw_codec_matches_the_g711_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as reference
    samples = np.arange(-32768, 32768, dtype=np.int16)
    assert audio.pcm_to_mulaw(samples) == reference.lin2ulaw(samples.tobytes(), 2)
    every_code = bytes(range(256))
    assert audio.mulaw_to_pcm(every_code).tobytes() == reference.ulaw2lin(every_code, 2)
    assert audio.pcm_to_mulaw(np.zeros(3, dtype=np.int16)) == audio.SILENCE * 3


def test_audio_is_cut_into_20_ms_frames_padded_with_silence():
    chunks = audio.frames(b"\x01" * 400)
    assert [len(c) for c in chunks] == [160, 160, 160]
    assert chunks[-1] == b"\x01" * 80 + audio.SILENCE * 80
    assert len(audio.frames(b"\x01" * 400, pad=False)) == 2


def test_resampling_keeps_the_duration():
    second = np.zeros(22050, dtype=np.int16)
    assert len(audio.resample(second, 22050)) == 8000


def test_the_voice_detector_hears_speech_start_and_stop_but_not_a_click():
    detector = SpeechDetector(start_ms=100, stop_ms=300)
    line = asyncio.run(spoken("When are you open on Saturdays?"))
    changes = [detector.feed(f) for f in audio.frames(line + SILENCE_SECOND)]
    assert [c for c in changes if c] == ["started", "stopped"]

    click = SpeechDetector(start_ms=160)  # STREAM_BARGE_IN_MS
    changes = [click.feed(f) for f in audio.frames(tone(0.06) + SILENCE_SECOND)]
    assert not any(changes)


def test_the_voice_detector_says_where_the_voice_ended_not_where_its_hangover_did():
    line = asyncio.run(spoken("Can you repair a leaking radiator this week?"))
    detector = SpeechDetector()
    heard = [(detector.feed(f), detector.voiced, detector.audible) for f in audio.frames(line)]
    heard += [
        (detector.feed(f), detector.voiced, detector.audible) for f in audio.frames(SILENCE_SECOND)
    ]
    last_voiced = max(i for i, (_, voiced, _) in enumerate(heard) if voiced)
    last_audible = max(i for i, (_, _, audible) in enumerate(heard) if audible)
    pcm = [audio.mulaw_to_pcm(f) for f in audio.frames(line + SILENCE_SECOND)]
    last_sound = max(i for i, samples in enumerate(pcm) if np.abs(samples).max() >= 64)
    assert last_audible == last_sound  # the end of the voice itself
    assert last_voiced > last_audible  # WebRTC's VAD hangs on for a few frames
    assert SpeechDetector().quiet  # a call starts quiet
    assert detector.quiet is False  # one second of silence after speech is not yet quiet


def test_the_loudest_sample_is_read_from_mulaw_codes():
    samples = np.array([0, 10, -300, 64, -2000], dtype=np.int16)
    coded = audio.pcm_to_mulaw(samples)
    assert audio.peak(coded) == audio.peak(audio.pcm_to_mulaw(samples[2:]))  # -2000 is the loudest
    assert audio.peak(audio.SILENCE * 160) == 0
    assert audio.peak(audio.pcm_to_mulaw(np.array([40], dtype=np.int16))) < audio.AUDIBLE
    assert audio.peak(audio.pcm_to_mulaw(np.array([-64], dtype=np.int16))) == audio.AUDIBLE


def test_espeak_streams_mulaw_audio_as_long_as_the_sentence():
    async def speak() -> bytes:
        async with get_streaming_voice("espeak").open(VoiceSettings(language="en-US")) as voice:
            return b"".join([chunk async for chunk in voice.speak("Hello, how can I help?")])

    sound = asyncio.run(speak())
    assert 0.8 < len(sound) / audio.SAMPLE_RATE < 3.0
    assert audio.level(audio.mulaw_to_pcm(sound)) > 500


async def recognise(
    chunks: list[bytes], options: recognition.RecognitionSettings, provider: str = "deepgram"
) -> list:
    """Send audio as fast as it goes (the stand-in counts time in audio), collect the events."""
    events: list[recognition.RecognitionEvent] = []
    async with recognition.get_recognizer(provider).stream(options) as stream:

        async def listen() -> None:
            async for event in stream.events():
                events.append(event)
                if event.kind == "end_of_turn":
                    return

        listening = asyncio.create_task(listen())
        for chunk in chunks:
            await stream.send(chunk)
        await asyncio.wait_for(listening, 10)
    return events


@pytest.mark.parametrize("provider", ["deepgram", "assemblyai"])
def test_recognition_follows_the_audio(fake_deepgram, provider):
    fake_deepgram.queue_transcript("Can I book a cleaning for next week?")
    line = asyncio.run(spoken("Can I book a cleaning for next week?"))
    chunks = audio.frames(SILENCE_SECOND + line + SILENCE_SECOND)
    options = recognition.RecognitionSettings(api_key=KEY, endpointing_ms=300, keywords=("Acme",))

    events = asyncio.run(recognise(chunks, options, provider))

    kinds = [e.kind for e in events]
    assert kinds[0] == "speech_started" and kinds[-2:] == ["final", "end_of_turn"]
    assert "interim" in kinds
    assert events[-1].text == "Can I book a cleaning for next week?"
    [turn] = fake_deepgram.recognized_turns()
    assert turn.final_sent_at >= turn.speech_ended_at
    [session] = fake_deepgram.listens
    assert session.closed_by_client  # the stream was closed the provider's way
    if provider == "assemblyai":
        assert session.params["encoding"] == "pcm_mulaw"
        assert session.params["min_end_of_turn_silence_when_confident"] == "300"
        assert session.params["keyterms_prompt"] == '["Acme"]'


@pytest.mark.parametrize("provider", ["deepgram", "assemblyai"])
def test_the_end_of_turn_says_where_the_last_word_ended_in_the_audio(fake_deepgram, provider):
    fake_deepgram.queue_transcript("Is anyone free on Friday?")
    line = asyncio.run(spoken("Is anyone free on Friday?"))
    chunks = audio.frames(SILENCE_SECOND + line + SILENCE_SECOND)
    options = recognition.RecognitionSettings(api_key=KEY, endpointing_ms=300)

    events = asyncio.run(recognise(chunks, options, provider))

    [turn] = fake_deepgram.recognized_turns()
    end = events[-1].speech_end
    assert end is not None and end == pytest.approx(turn.speech_end_audio, abs=0.001)
    # The stand-in's "loud" ends where the voice does: inside the line, not in the silence.
    assert 1.0 < end <= 1.0 + len(line) / audio.SAMPLE_RATE


@pytest.mark.parametrize("provider", ["deepgram", "assemblyai"])
def test_voice_and_a_quiet_line_go_to_the_recogniser_in_fewer_larger_messages(
    fake_deepgram, provider, settings
):
    settings.STREAM_RECOGNITION_CHUNK_MS = 40
    settings.STREAM_RECOGNITION_VOICE_CHUNK_MS = 100
    settings.STREAM_RECOGNITION_QUIET_CHUNK_MS = 200
    frames = audio.frames(SILENCE_SECOND * 2)

    async def send(**line: bool) -> None:
        options = recognition.RecognitionSettings(api_key=KEY)
        async with recognition.get_recognizer(provider).stream(options) as stream:
            for frame in frames:
                await stream.send(frame, **line)
            await asyncio.sleep(0.2)  # the stand-in reads what was sent

    for line in ({}, {"voiced": True}, {"quiet": True}):
        asyncio.run(send(**line))
    pause, voice, quiet = (session.audio_messages for session in fake_deepgram.listens)
    # Whole frames: 40 ms for Deepgram, 60 for AssemblyAI (it takes 50 ms at the least).
    assert pause == 2000 // (60 if provider == "assemblyai" else 40)
    assert voice == 2000 // 100
    assert quiet == 2000 // 200


def test_the_listen_url_carries_the_assistants_settings():
    options = recognition.RecognitionSettings(
        api_key=KEY, model="nova-3", language="de-DE", endpointing_ms=500, keywords=("Acme",)
    )
    url = listen_url(options)
    assert url.startswith("/v1/listen?encoding=mulaw&sample_rate=8000")
    assert "language=de-DE" in url and "endpointing=500" in url and "keyterm=Acme" in url
    older = listen_url(
        recognition.RecognitionSettings(api_key=KEY, model="nova-2", keywords=("Acme",))
    )
    assert "keywords=Acme" in older and "keyterm" not in older


def test_a_refused_key_is_a_permanent_recognition_error(fake_deepgram):
    options = recognition.RecognitionSettings(api_key="wrong")
    fake_deepgram.configure(api_key=KEY)

    async def open_it() -> None:
        async with recognition.get_recognizer("deepgram").stream(options):
            pass

    with pytest.raises(recognition.RecognitionError) as refused:
        asyncio.run(open_it())
    assert refused.value.permanent and "401" in refused.value.message


def test_a_dropped_recognition_stream_is_an_error_not_an_end(fake_deepgram):
    fake_deepgram.configure(listen_fault="drop")
    line = asyncio.run(spoken("Hello there"))
    options = recognition.RecognitionSettings(api_key=KEY)
    with pytest.raises(recognition.RecognitionError) as dropped:
        asyncio.run(recognise(audio.frames(line + SILENCE_SECOND), options))
    assert not dropped.value.permanent


def test_aura_streams_a_sentence_and_the_next_on_the_same_connection(fake_deepgram):
    async def speak() -> list[bytes]:
        options = VoiceSettings(api_key=KEY, voice="aura-2-thalia-en")
        async with get_streaming_voice("deepgram").open(options) as voice:
            return [
                b"".join([c async for c in voice.speak(text)])
                for text in ("Hello there.", "How can I help?")
            ]

    first, second = asyncio.run(speak())
    assert len(first) > 4000 and len(second) > 4000
    assert fake_deepgram.spoken == ["Hello there.", "How can I help?"]


def test_aura_without_a_key_or_with_a_wrong_one_fails_permanently(fake_deepgram):
    async def speak(key: str) -> None:
        async with get_streaming_voice("deepgram").open(VoiceSettings(api_key=key)) as voice:
            async for _ in voice.speak("Hello."):
                pass

    for key in ("", "wrong"):
        with pytest.raises(TTSError) as failed:
            asyncio.run(speak(key))
        assert failed.value.permanent
