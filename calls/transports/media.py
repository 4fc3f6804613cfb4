"""Stream mode: Twilio Media Streams on `/twilio/media`. Audio flows both ways; the platform
recognises the caller with its own streaming provider, decides when the caller's turn ends and
when the caller talks over the assistant, and speaks with its own streaming voice.

Twilio -> us: `connected`, `start` (streamSid, callSid, mu-law 8 kHz), `media` (20 ms of the
caller's audio), `dtmf`, `mark` (the audio sent before it has been played), `stop`.
Us -> Twilio: `media` (20 ms frames, paced close to real time), a `mark` after each sentence
(so the platform knows what the caller heard), `clear` (barge-in: drop what is not played yet).

The handshake is refused unless it carries a valid X-Twilio-Signature for the call named in the
URL; `start` must name that call. A session that ends (a transfer, a provider that failed)
closes the socket, and Twilio asks `/twilio/stream-action` what to do next.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from dataclasses import replace

from django.conf import settings

from calls import events, languages, phrases
from calls.engine import clean_text
from calls.models import Call
from calls.transports.media_speaker import LOCAL_VOICE, MediaSpeaker
from calls.transports.relay import CLOSE_WRONG_CALL, live_socket_release, socket_call_claim
from calls.transports.sockets import SessionConsumer
from core import caching
from core.asyncdb import database_async
from providers import audio, recognition
from providers.recognition.vad import SpeechDetector
from providers.speech.streaming import VoiceSettings

logger = logging.getLogger(__name__)

HANDOFF_SECONDS = 3600
# A media payload longer than this (decoded) is not a 20 ms frame: skipped.
MAX_MEDIA_BYTES = 4 * audio.FRAME_BYTES


def handoff_key(call: Call) -> str:
    return f"stream:handoff:{call.id}"


def handoff_store(call: Call, handoff: dict) -> None:
    """Keep what should happen after the session for `/twilio/stream-action` (any instance)."""
    try:
        caching.shared_cache().set(handoff_key(call), handoff, timeout=HANDOFF_SECONDS)
    except Exception:
        logger.warning("stream: could not keep the handoff", exc_info=True)


def handoff_read(call: Call) -> dict:
    """What the session left to do; kept for Twilio's retries of the action URL."""
    try:
        handoff = caching.shared_cache().get(handoff_key(call))
    except Exception:
        logger.warning("stream: could not read the handoff", exc_info=True)
        return {}
    return handoff if isinstance(handoff, dict) else {}


def recognition_settings(call: Call) -> recognition.RecognitionSettings:
    """How the caller is recognised. An assistant that accepts several languages is heard with
    Deepgram's multilingual model ("multi"), so a switch needs no new connection."""
    config = call.config_snapshot
    keywords = [k.strip() for k in config.get("recognition_keywords", "").splitlines()]
    provider = config.get("recognition_provider", "deepgram")
    language = config.get("language", "en-US")
    if provider == "deepgram" and languages.is_multilingual(config):
        language = "multi"
    return recognition.RecognitionSettings(
        api_key=assemblyai_key(call) if provider == "assemblyai" else deepgram_key(call),
        model=config.get("recognition_model", ""),
        language=language,
        endpointing_ms=int(config.get("endpointing_ms", 300)),
        keywords=tuple(k for k in keywords if k)[:100],
    )


def deepgram_key(call: Call) -> str:
    """The tenant's own Deepgram key if it has one, else the platform's."""
    return _provider_key(call, "deepgram", settings.DEEPGRAM_API_KEY)


def assemblyai_key(call: Call) -> str:
    """The tenant's own AssemblyAI key if it has one, else the platform's."""
    return _provider_key(call, "assemblyai", settings.ASSEMBLYAI_API_KEY)


def _provider_key(call: Call, provider: str, platform_key: str) -> str:
    try:
        return getattr(call.tenant, f"get_{provider}_api_key")() or platform_key
    except ValueError:
        logger.error("stream: the tenant's %s key cannot be decrypted", provider)
        return platform_key


class MediaStreamConsumer(SessionConsumer):
    """Twilio Media Streams (`/twilio/media`), bidirectional."""

    MESSAGES = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})
    BEFORE_SESSION = frozenset({"connected", "start"})
    LOG_NAME = "stream"
    KIND_FIELD = "event"
    handshake_call: Call | None = None
    stream_sid = ""
    speaker: MediaSpeaker | None = None

    async def connect(self) -> None:
        self.holder = uuid.uuid4().hex
        handshake = await database_async(socket_call_claim)(
            self.scope, mode=Call.Mode.STREAM, holder=self.holder
        )
        if handshake is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        self.handshake_call, self.first_socket = handshake
        self.sequence = 0
        self.detector = SpeechDetector(start_ms=settings.STREAM_BARGE_IN_MS)
        self.listening: asyncio.Task | None = None
        self.recognizer: recognition.RecognitionStream | None = None
        self.max_chars = settings.STREAM_MAX_FRAME_CHARS
        self.last_voice_at = 0.0  # when our detector last heard the caller's voice
        # The recognition stream's audio clock: seconds of audio sent, and when the last
        # frame of it arrived (to place the provider's word times on the wall clock).
        self.audio_seconds = 0.0
        self.audio_clock_at = 0.0
        self.speech_started_at = 0.0  # when it last heard the caller start talking
        self.provider_heard_at = 0.0  # the last message of the recognition provider
        self.watchdog: asyncio.TimerHandle | None = None
        self.greeting: asyncio.Task | None = None  # held, so that the task is not collected
        self.failing: asyncio.Task | None = None
        self.ending = self.failed = False
        await self.accept()

    def max_frame_chars(self) -> int:
        return settings.STREAM_MAX_FRAME_CHARS

    async def dispatch(self, message: dict) -> None:
        """Frames arrive fifty times a second per call, nearly all of them `media`: those go
        straight to `on_media`, without Channels' hop to a thread before each one (to close
        stale database connections; this consumer's database work runs in `core.asyncdb`'s
        threads, which close their own) and without the checks every other message gets."""
        if message["type"] == "websocket.receive":
            media = self._media_of(message.get("text"))
            if media is None:
                await self.websocket_receive(message)
                return
            try:
                await self.on_media(media)
            except Exception:
                with self.call_context():
                    logger.exception("stream: handling a media message failed")
            return
        await super().dispatch(message)

    def _media_of(self, text: str | None) -> dict | None:
        """The message, if `text` is a well-formed `media` message of a running session."""
        if text is None or self.conversation is None or len(text) > self.max_chars:
            return None
        try:
            message = json.loads(text)
        except ValueError:
            return None
        return message if type(message) is dict and message.get("event") == "media" else None

    async def disconnect(self, code: int) -> None:
        try:
            with self.call_context():
                await self._stop_listening()
                if self.speaker is not None:
                    await self.speaker.close()
            await super().disconnect(code)
        finally:
            if self.handshake_call is not None:
                await database_async(live_socket_release)(self.handshake_call, self.holder)

    async def send_event(self, message: dict) -> None:
        """Send a Media Streams message of this stream (dropped once the socket is closing)."""
        if self.ending and message["event"] == "media":
            return
        await self.send(json.dumps({**message, "streamSid": self.stream_sid}))

    # --- messages ------------------------------------------------------------------------------

    def _in_order(self, message: dict) -> bool:
        """Twilio numbers its messages; a repeated or late one is skipped."""
        try:
            number = int(message.get("sequenceNumber", 0))
        except (TypeError, ValueError):
            return False
        if number and number <= self.sequence:
            with self.call_context():
                logger.warning("stream: out-of-order message skipped", extra={"sequence": number})
            return False
        self.sequence = max(self.sequence, number)
        return True

    async def on_connected(self, message: dict) -> None:
        """Twilio's hello; nothing to do until `start`."""

    async def on_start(self, message: dict) -> None:
        call = self.handshake_call
        assert call is not None
        start = message.get("start")
        if self.conversation is not None or not isinstance(start, dict):
            logger.warning("stream: repeated or malformed start ignored")
            return
        if start.get("callSid") != call.call_sid:
            logger.warning("stream: start names another call; closing")
            await self.close(code=CLOSE_WRONG_CALL)
            return
        media_format = start.get("mediaFormat") or {}
        if (
            media_format.get("encoding", "audio/x-mulaw") != "audio/x-mulaw"
            or int(media_format.get("sampleRate", audio.SAMPLE_RATE) or 0) != audio.SAMPLE_RATE
        ):
            logger.warning("stream: unsupported media format; closing")
            await self.close(code=CLOSE_WRONG_CALL)
            return
        self.stream_sid = clean_text(start.get("streamSid") or message.get("streamSid"), 64)
        self._in_order(message)
        config = call.config_snapshot
        options = VoiceSettings(
            api_key=deepgram_key(call),
            voice=config.get("stream_voice", ""),
            language=config.get("language", "en-US"),
        )
        voice = config.get("voice_provider") or LOCAL_VOICE
        if voice != LOCAL_VOICE and not options.api_key:
            voice = LOCAL_VOICE  # no key for the provider: straight to the local engine
        if voice == LOCAL_VOICE:
            options = replace(options, voice="")  # espeak-ng picks its voice by language
        self.speaker = MediaSpeaker(self, tenant_id=call.tenant_id, voice=voice, options=options)
        if not await self.start_conversation(call, self.speaker):
            await self.close()
            return
        try:
            self.recognizer = await self._open_recognizer(call)
        except recognition.RecognitionError as exc:
            await self._recognition_failed(exc)
            return
        self.listening = asyncio.create_task(self._listen())
        if greeting := config.get("greeting"):
            self.greeting = asyncio.create_task(self.speaker.announce(greeting))

    async def _open_recognizer(self, call: Call) -> recognition.RecognitionStream:
        name = call.config_snapshot.get("recognition_provider", "deepgram")
        stream = recognition.get_recognizer(name).stream(recognition_settings(call))
        return await stream.__aenter__()

    async def on_media(self, message: dict) -> None:
        media = message.get("media")
        if not isinstance(media, dict) or media.get("track", "inbound") != "inbound":
            return
        if not self._in_order(message):
            return
        try:
            frame = base64.b64decode(str(media.get("payload", "")), validate=True)
        except (binascii.Error, ValueError):
            self._skipped("media payload that is not base64")
            return
        if not frame or len(frame) > MAX_MEDIA_BYTES:
            self._skipped("media payload of a wrong size")
            return
        now = time.monotonic()
        if len(frame) == audio.FRAME_BYTES:
            await self._detect(frame, now)
        else:
            for piece in audio.frames(frame, pad=False):
                await self._detect(piece, now)
        if self.recognizer is not None:
            self.audio_seconds += len(frame) / audio.SAMPLE_RATE
            self.audio_clock_at = now
            detector = self.detector
            try:
                await self.recognizer.send(frame, voiced=detector.voiced, quiet=detector.quiet)
            except recognition.RecognitionError as exc:
                await self._recognition_failed(exc)

    def _skipped(self, what: str) -> None:
        with self.call_context():
            logger.warning("stream: %s skipped", what)

    async def _detect(self, frame: bytes, now: float) -> None:
        """Our own voice-activity detector: barge-in at once, and the moment speech ended."""
        change = self.detector.feed(frame)
        if self.detector.audible:
            self.last_voice_at = now
        if change == "started":
            self.speech_started_at = now
            if self.speaker is not None and self.speaker.speaking:
                with self.call_context():
                    await self._barge_in()
        elif change == "stopped":
            self._watch_recognition()

    async def on_mark(self, message: dict) -> None:
        mark = message.get("mark")
        if isinstance(mark, dict) and self.speaker is not None:
            self.speaker.played(str(mark.get("name", ""))[:100])

    async def on_dtmf(self, message: dict) -> None:
        dtmf = message.get("dtmf")
        if isinstance(dtmf, dict):
            await self.conversation.dtmf(dtmf.get("digit"))

    async def on_stop(self, message: dict) -> None:
        """The call is over (the caller hung up): the session ends when the socket closes."""
        await self._stop_listening()

    # --- turn-taking ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        """The recognition provider's events, until the session ends or the provider fails."""
        assert self.recognizer is not None
        with self.call_context():
            try:
                async for event in self.recognizer.events():
                    self.provider_heard_at = time.monotonic()
                    await self._heard(event)
            except recognition.RecognitionError as exc:
                await self._recognition_failed(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("stream: recognition failed")
                await self._recognition_failed(recognition.RecognitionError(str(exc)))

    async def _heard(self, event: recognition.RecognitionEvent) -> None:
        if event.kind == "interim" and self.call is not None:
            await events.apublish("partial", call=self.call, role="caller", text=event.text[:2000])
        elif event.kind == "end_of_turn":
            self._cancel_watchdog()
            if self.speaker is not None and self.speaker.speaking:
                await self._barge_in()
            await self.conversation.prompt(
                event.text,
                speech_ended_at=self._speech_ended_at(event),
                confidence=event.confidence,
            )

    def _speech_ended_at(self, event: recognition.RecognitionEvent) -> float:
        """When the caller stopped speaking, which the turn's timings count from: where the
        provider says the last word ended (on the audio clock), else the last audible frame
        our detector heard, else now."""
        end = event.speech_end
        if end is not None and 0 <= end <= self.audio_seconds and self.audio_clock_at:
            return self.audio_clock_at - (self.audio_seconds - end)
        return self.last_voice_at or time.monotonic()

    async def _barge_in(self) -> None:
        """The caller talks over the assistant: Twilio drops the rest, the answer stops, and
        what the caller heard of it is stored."""
        speaker = self.speaker
        assert speaker is not None
        heard = speaker.heard_now()
        await speaker.clear()
        await self.conversation.interrupt(heard)

    def _watch_recognition(self) -> None:
        """The caller spoke: the provider owes us something. One that has said nothing since
        the caller started talking, a while after they stopped, has hung: the session ends
        instead of leaving the caller waiting."""
        self._cancel_watchdog()
        spoke_at = self.speech_started_at
        timeout = settings.STREAM_RECOGNITION_TIMEOUT_SECONDS

        def check() -> None:
            if self.provider_heard_at < spoke_at and not self.ending:
                error = recognition.RecognitionError("no word from the recognition provider")
                self.failing = asyncio.create_task(self._recognition_failed(error))

        self.watchdog = asyncio.get_running_loop().call_later(timeout, check)

    def _cancel_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    async def _stop_listening(self) -> None:
        self._cancel_watchdog()
        if self.listening is not None and self.listening is not asyncio.current_task():
            self.listening.cancel()
            await asyncio.wait([self.listening])
        if self.recognizer is not None:
            recognizer, self.recognizer = self.recognizer, None
            try:
                await recognizer.close()
            except Exception:
                logger.warning("stream: closing the recognizer failed", exc_info=True)

    # --- the end of a session ------------------------------------------------------------------

    async def _recognition_failed(self, exc: recognition.RecognitionError) -> None:
        """Without recognition the call cannot go on: the call is closed as failed, and the
        caller hears an apology from Twilio (`/twilio/stream-action`) once the socket closes."""
        if self.ending or self.failed:
            return
        self.failed = True
        logger.error("stream: recognition failed: %s", exc.message)
        with self.call_context():
            await self.conversation.error(f"recognition: {exc.message}")
            await self.conversation.abandon(error=f"recognition: {exc.message}")
            message = self.conversation.phrase(phrases.CANNOT_HEAR)
            await self.end_session({"reason": "recognition-failed", "message": message})

    async def end_session(self, handoff: dict) -> None:
        """End the stream: keep `handoff` for the action URL, then close the socket."""
        if self.ending:
            return
        call = self.handshake_call
        assert call is not None
        await database_async(handoff_store)(call, handoff)
        self.ending = True
        await self.close()
