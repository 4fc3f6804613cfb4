"""Stream mode's speaker: answers spoken as paced 20 ms mu-law frames, sentence by sentence while
the model writes, with a `mark` after each sentence so the platform knows what the caller heard;
`clear` on barge-in. The Media Streams consumer (`calls.transports.media`) owns the socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from django.conf import settings

from assistants.models import CallConfig
from calls.engine import Reply
from calls.models import Turn
from core import caching
from providers import audio
from providers.speech import TTSError
from providers.speech.streaming import VoiceSettings, VoiceStream, get_streaming_voice

logger = logging.getLogger(__name__)

LOCAL_VOICE = "espeak"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Answers whose audio is kept and reused: the same words come back call after call.
REUSED_SOURCES = frozenset({Turn.Source.FAQ, Turn.Source.CACHE, Turn.Source.SYSTEM})


class StreamOutput(Protocol):
    """The socket side a speaker talks through."""

    async def send_event(self, message: dict) -> None:
        """Send a Media Streams message (media, mark, clear) of this stream."""

    async def end_session(self, handoff: dict) -> None:
        """End the stream; `handoff` says what should happen to the call next."""


def _cache_get(key: str) -> bytes | None:
    try:
        return caching.shared_cache().get(key)
    except Exception:  # an optimisation: without the cache the audio is made again
        logger.warning("stream: audio cache unavailable", exc_info=True)
        return None


def _cache_set(key: str, audio: bytes) -> None:
    try:
        caching.shared_cache().set(key, audio, timeout=settings.TTS_AUDIO_TTL_HOURS * 3600)
    except Exception:
        logger.warning("stream: audio cache unavailable", exc_info=True)


@dataclass
class Playback:
    """One answer being spoken: its sentences in order, the task that speaks them, and the
    marks sent after each (name -> sentence)."""

    reply: Reply
    number: int
    pending: str = ""  # text of a sentence not finished yet
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None
    marks: dict[str, str] = field(default_factory=dict)
    heard: list[str] = field(default_factory=list)


class MediaSpeaker:
    """Speaks answers as paced mu-law frames, sentence by sentence while the model writes.

    The caller hears audio at the pace it is played; it goes out in messages of
    `STREAM_MEDIA_MESSAGE_MS`, each sent once what was sent before is no more than
    `STREAM_AUDIO_LEAD_MS` ahead of it, so that a `clear` leaves little already played. A voice
    provider that fails is replaced by the local engine (espeak-ng) for the rest of the call.
    """

    streams_text = True
    read_every = 0.0  # each piece of the answer as it comes

    def __init__(
        self, output: StreamOutput, *, tenant_id: object, voice: str, options: VoiceSettings
    ) -> None:
        self.output = output
        self.tenant_id = tenant_id
        self.voice_name = voice
        self.options = options
        self._voice: VoiceStream | None = None
        self._own_voice = (options.language, options.voice)  # the assistant's main language
        self._playback: Playback | None = None
        self._played_until = 0.0  # monotonic time at which the audio sent so far ends
        self._lead = settings.STREAM_AUDIO_LEAD_MS / 1000
        frames_per_message = max(1, settings.STREAM_MEDIA_MESSAGE_MS // audio.FRAME_MS)
        self._message_bytes = frames_per_message * audio.FRAME_BYTES
        self._count = 0
        self.pending_marks: dict[str, Playback] = {}

    # --- Speaker -------------------------------------------------------------------------------

    async def switch_language(self, config: CallConfig) -> None:
        """From the next sentence on, speak `config["language"]`: with the assistant's own voice
        in its main language, with its `voices` entry for another one, else with the provider's
        default for that language."""
        language = config["language"]
        if language == self.options.language:
            return
        own_language, own_voice = self._own_voice
        voices = config.get("voices") or {}
        voice = own_voice if language == own_language else voices.get(language, "")
        if self.voice_name == LOCAL_VOICE:
            voice = ""  # espeak-ng picks its voice by language
        if self._voice is not None:
            await self._voice.close()
            self._voice = None
        self.options = replace(self.options, language=language, voice=voice)

    async def say(self, reply: Reply, text: str, *, complete: bool = False) -> None:
        playback = self._begin(reply)
        playback.pending += text
        *sentences, playback.pending = _SENTENCE_END.split(playback.pending)
        if complete:
            sentences.append(playback.pending)
            playback.pending = ""
        for sentence in sentences:
            if sentence.strip():
                playback.queue.put_nowait(sentence.strip())

    async def done(self, reply: Reply) -> None:
        playback = self._begin(reply)
        if playback.pending.strip():
            playback.queue.put_nowait(playback.pending.strip())
        playback.pending = ""
        playback.queue.put_nowait(None)
        await asyncio.wait([playback.task])
        if reply.last_sent_at is None:
            reply.last_sent_at = time.monotonic()

    async def stop(self, reply: Reply) -> None:
        """Stop speaking `reply`: nothing more is synthesised or sent; on an interruption
        Twilio also drops what it has not played."""
        playback = self._playback
        if playback is None or playback.reply is not reply:
            return
        if playback.task is not None and not playback.task.done():
            playback.task.cancel()
            await asyncio.wait([playback.task])
        if reply.interrupted:
            await self.clear()

    async def cut(self, reply: Reply) -> None:
        """The model broke off: its unfinished sentence is never said."""
        if self._playback is not None and self._playback.reply is reply:
            self._playback.pending = ""

    async def end(self, handoff: dict) -> None:
        await self.output.end_session(handoff)

    # --- the socket's side ---------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        """Whether the caller may be hearing the assistant now (audio sent but not played)."""
        playing = self._playback is not None and not (
            self._playback.task is None or self._playback.task.done()
        )
        return playing or bool(self.pending_marks)

    def heard_now(self) -> str:
        """What the caller has heard of the answer being given: the sentences whose marks
        Twilio played back."""
        return " ".join(self._playback.heard) if self._playback is not None else ""

    def played(self, name: str) -> None:
        """Twilio played everything up to the mark `name`."""
        playback = self.pending_marks.pop(name, None)
        if playback is not None:
            playback.heard.append(playback.marks[name])

    async def clear(self) -> None:
        """Barge-in: Twilio drops the audio not played yet; marks still pending mean nothing."""
        playback = self._playback
        if playback is not None and playback.task is not None and not playback.task.done():
            playback.task.cancel()
            await asyncio.wait([playback.task])
        self.pending_marks.clear()
        self._played_until = 0.0
        await self.output.send_event({"event": "clear"})

    async def announce(self, text: str) -> None:
        """Say a line of the platform's own (the greeting): spoken like an answer, not stored."""
        now = time.monotonic()
        reply = Reply(utterance="", received_at=now, deadline=now, source=Turn.Source.SYSTEM)
        await self.say(reply, text, complete=True)
        await self.done(reply)

    async def close(self) -> None:
        if self._playback is not None and self._playback.task is not None:
            self._playback.task.cancel()
            await asyncio.wait([self._playback.task])
        if self._voice is not None:
            await self._voice.close()

    # --- speaking ------------------------------------------------------------------------------

    def _begin(self, reply: Reply) -> Playback:
        playback = self._playback
        if playback is not None and playback.reply is reply:
            if playback.task is None or playback.task.done():  # stopped early, then the apology
                playback.task = asyncio.create_task(self._speak(playback, None))
            return playback
        self._count += 1
        new = Playback(reply=reply, number=self._count)
        previous = playback.task if playback is not None else None
        new.task = asyncio.create_task(self._speak(new, previous))
        self._playback = new
        return new

    async def _speak(self, playback: Playback, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # one answer after the other, never mixed
        index = 0
        while (sentence := await playback.queue.get()) is not None:
            if not await self._speak_sentence(playback, sentence):
                continue  # no audio at all: nothing was said
            index += 1
            name = f"{playback.number}.{index}"
            playback.marks[name] = sentence
            self.pending_marks[name] = playback
            await self.output.send_event({"event": "mark", "mark": {"name": name}})

    async def _speak_sentence(self, playback: Playback, sentence: str) -> bool:
        """Send the sentence's audio as it is made, in whole frames; False if there was none."""
        reply, rest = playback.reply, b""
        started = False
        async for chunk in self._audio(reply, sentence):
            if reply.first_audio_at is None:
                reply.first_audio_at = time.monotonic()
            rest += chunk
            whole = len(rest) - len(rest) % audio.FRAME_BYTES
            size = self._message_bytes
            for start in range(0, whole, size):
                await self._send_audio(rest[start : min(start + size, whole)])
                if not started:
                    started = True
                    reply.parts.append(("" if not reply.parts else " ") + sentence)
                    reply.first_sent_at = reply.first_sent_at or time.monotonic()
            rest = rest[whole:]
        if rest:
            await self._send_audio(rest.ljust(audio.FRAME_BYTES, audio.SILENCE))
        reply.last_sent_at = time.monotonic()
        return started

    async def _audio(self, reply: Reply, sentence: str):
        """The sentence's audio. The platform's own lines and FAQ or cached answers are said
        again and again: their audio is kept (per tenant, voice and text) and reused."""
        key = self._audio_key(sentence) if reply.source in REUSED_SOURCES else ""
        if key and (kept := await asyncio.to_thread(_cache_get, key)):
            yield kept
            return
        chunks: list[bytes] = []
        errors = len(reply.errors)
        async for chunk in self._synthesize(reply, sentence):
            chunks.append(chunk)
            yield chunk
        if key and chunks and len(reply.errors) == errors:
            await asyncio.to_thread(_cache_set, key, b"".join(chunks))

    def _audio_key(self, sentence: str) -> str:
        options = self.options
        raw = "|".join([str(self.tenant_id), self.voice_name, options.voice, options.language])
        return "stream:audio:" + hashlib.sha256(f"{raw}|{sentence}".encode()).hexdigest()

    async def _synthesize(self, reply: Reply, sentence: str):
        """The sentence's audio from the call's voice; from the local engine once that fails."""
        sent_any = False
        try:
            voice = await self._open_voice()
            async for chunk in voice.speak(sentence):
                sent_any = True
                yield chunk
            return
        except TTSError as exc:
            if self.voice_name == LOCAL_VOICE:
                reply.errors.append(f"speech: {exc.message}")
                return
            logger.warning("stream: the voice failed; the local engine takes over: %s", exc)
            reply.errors.append(f"speech: {exc.message}")
            reply.fallbacks.append(f"tts:{LOCAL_VOICE}")
            await self._switch_to_local_voice()
        if sent_any:
            return  # the rest of a half-said sentence is dropped, not repeated
        voice = await self._open_voice()
        try:
            async for chunk in voice.speak(sentence):
                yield chunk
        except TTSError as exc:
            reply.errors.append(f"speech: {exc.message}")

    async def _open_voice(self) -> VoiceStream:
        if self._voice is None:
            self._voice = get_streaming_voice(self.voice_name).open(self.options)
        return self._voice

    async def _switch_to_local_voice(self) -> None:
        if self._voice is not None:
            await self._voice.close()
        self._voice, self.voice_name = None, LOCAL_VOICE
        self.options = replace(
            self.options, voice=""
        )  # the provider's voice name means nothing here

    async def _send_audio(self, piece: bytes) -> None:
        """Send whole frames of audio (at most STREAM_MEDIA_MESSAGE_MS) in one `media` message,
        once what was sent before is no more than the lead ahead of what is being played.
        Twilio buffers what it gets; a message per 20 ms frame costs the server far more than
        the frame."""
        now = time.monotonic()
        ahead = self._played_until - now - self._lead
        if ahead > 0:
            await asyncio.sleep(ahead)
            now = time.monotonic()
        self._played_until = max(self._played_until, now) + len(piece) / audio.SAMPLE_RATE
        payload = base64.b64encode(piece).decode("ascii")
        await self.output.send_event({"event": "media", "media": {"payload": payload}})
