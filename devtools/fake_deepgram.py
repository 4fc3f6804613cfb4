"""A local server that speaks Deepgram's streaming protocols, for tests, benchmarks and demos.

- `/v1/listen` (live recognition over a WebSocket): mu-law 8 kHz audio in; `SpeechStarted`,
  interim and final `Results` (`is_final`, `speech_final`), `UtteranceEnd` and `Metadata` out.
  It is told what the caller will say (`queue_transcript()`, or `/_fake/transcripts`), and
  decides *when* from the audio itself: speech is a frame louder than `speech_level`, the turn
  ends after the `endpointing` milliseconds of silence the client asked for, counted in audio
  time as the frames arrive. Turn-taking is thereby tested on real timing.
- `/v1/speak` (Aura streaming speech over a WebSocket): `Speak`, `Flush`, `Clear`, `Close` in;
  mu-law 8 kHz audio and `Flushed` / `Cleared` out, the first chunk after `speak_first_chunk_ms`.
  The audio is espeak-ng's speech (or, with `voice="tone"`, a tone as long as the text would
  take to say, which costs nothing to make).

- `/v3/ws` (AssemblyAI Universal Streaming): the same decisions, told in AssemblyAI's messages
  (`Begin`, `SpeechStarted`, `Turn` with `end_of_turn`, `Termination`).

Faults at the wire: `listen_fault` / `speak_fault` = "drop" (the socket is closed mid-call, as
a crashed server does), "hang" (nothing more is sent), or an HTTP status refusing the handshake;
`fault_after_turns` recognised turns (or spoken sentences) are served normally first.

In-process use (tests)::

    with FakeDeepgramServer() as fake:
        fake.queue_transcript("When are you open?")
        ...  # DEEPGRAM_BASE_URL = fake.base_url

`manage.py fake_deepgram` serves it in the foreground for the demo and `simulate_call --stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from providers.audio import FRAME_BYTES, SAMPLE_RATE, level, mulaw_to_pcm, pcm_to_mulaw
from providers.speech.streaming import VoiceSettings

FRAME_SECONDS = FRAME_BYTES / SAMPLE_RATE
SPEAK_CHUNK_BYTES = 800  # 100 ms of audio per binary message, as Aura sends it
TONE_SECONDS_PER_CHAR = 0.06


@dataclass
class FakeDeepgramConfig:
    api_key: str | None = None  # None: any key is accepted
    speech_level: float = 400.0  # RMS of a 16-bit frame above which it is speech
    interim_every_ms: int = 200  # of speech, between interim results
    final_latency_ms: float = 0.0  # the model's own time, after the endpointing silence
    default_transcript: str = "Hello?"  # when no script is queued
    speak_first_chunk_ms: float = 0.0
    voice: str = "espeak"  # or "tone"
    listen_fault: str = ""  # "drop", "hang", or an HTTP status such as "401"
    speak_fault: str = ""
    fault_after_turns: int = 0


@dataclass
class RecognizedTurn:
    """One turn the recogniser ended, with the wall-clock moments that split its latency."""

    transcript: str
    speech_started_at: float
    speech_ended_at: float  # the last loud frame arrived
    final_sent_at: float
    speech_end_audio: float = 0.0  # the same moment in seconds of the stream's audio


@dataclass
class ListenSession:
    """What one `/v1/listen` connection asked for and was told."""

    params: dict[str, str]
    turns: list[RecognizedTurn] = field(default_factory=list)
    closed_by_client: bool = False
    audio_messages: int = 0  # binary messages of audio received


class FakeDeepgramServer:
    """Deepgram's live recognition and streaming speech on loopback (see the module doc)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self.host, self.port = host, port
        self._initial = dict(config)
        self.config = FakeDeepgramConfig(**config)
        self._lock = threading.Lock()
        self._transcripts: list[str] = []
        self.listens: list[ListenSession] = []
        self.spoken: list[str] = []  # sentences asked of /v1/speak
        self.active_sockets = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to give the platform as DEEPGRAM_BASE_URL."""
        return f"ws://{self.host}:{self.port}"

    def queue_transcript(self, *texts: str) -> None:
        """What the caller says next, one turn each, in order (over every connection)."""
        with self._lock:
            self._transcripts.extend(texts)

    def configure(self, **changes: Any) -> None:
        known = {f.name for f in fields(FakeDeepgramConfig)}
        if unknown := set(changes) - known:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self.config, name, value)

    def reset(self) -> None:
        with self._lock:
            self._transcripts.clear()
            self.listens.clear()
            self.spoken.clear()
            self.config = FakeDeepgramConfig(**self._initial)

    def recognized_turns(self) -> list[RecognizedTurn]:
        with self._lock:
            return [turn for session in self.listens for turn in session.turns]

    def _next_transcript(self) -> str:
        with self._lock:
            return self._transcripts.pop(0) if self._transcripts else self.config.default_transcript

    # --- running -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeDeepgramServer:
        """Serve in a background thread; returns once the port is bound."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._open())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._close())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-deepgram", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the fake Deepgram server did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._loop = self._thread = None

    def __enter__(self) -> FakeDeepgramServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the foreground until interrupted; `on_ready` gets the base URL."""

        async def main() -> None:
            await self._open()
            if on_ready is not None:
                on_ready(self.base_url)
            try:
                await asyncio.Event().wait()
            finally:
                await self._close()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_get("/v1/speak", self._speak)
        app.router.add_get("/v3/ws", self._assemblyai)
        app.router.add_post("/_fake/transcripts", self._control_transcripts)
        app.router.add_post("/_fake/config", self._control_config)
        app.router.add_post("/_fake/reset", self._control_reset)
        return app

    async def _open(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refusal(self, request: web.Request, fault: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if request.path.startswith("/v3/"):  # AssemblyAI: the key alone
            scheme, key = "token", header
        if scheme.lower() != "token" or not key.strip():
            return web.json_response({"err_code": "INVALID_AUTH"}, status=401)
        if self.config.api_key is not None and key.strip() != self.config.api_key:
            return web.json_response({"err_code": "INVALID_AUTH"}, status=401)
        if fault.isdigit() and self.config.fault_after_turns == 0:
            return web.json_response({"err_code": "FAULT"}, status=int(fault))
        return None

    # --- /v1/listen --------------------------------------------------------------------------

    async def _listen(
        self, request: web.Request, listener: type[_Listener] | None = None
    ) -> web.StreamResponse:
        if refusal := self._refusal(request, self.config.listen_fault):
            return refusal
        socket = web.WebSocketResponse(max_msg_size=2**20)
        await socket.prepare(request)
        session = ListenSession(params=dict(request.query))
        with self._lock:
            self.listens.append(session)
        self.active_sockets += 1
        try:
            await (listener or _Listener)(self, socket, session).run()
        finally:
            self.active_sockets -= 1
        return socket

    async def _assemblyai(self, request: web.Request) -> web.StreamResponse:
        """AssemblyAI's streaming recognition, on the same audio decisions (its key is sent
        bare in `Authorization`)."""
        return await self._listen(request, _AssemblyAIListener)

    # --- /v1/speak ---------------------------------------------------------------------------

    async def _speak(self, request: web.Request) -> web.StreamResponse:
        if refusal := self._refusal(request, self.config.speak_fault):
            return refusal
        socket = web.WebSocketResponse(max_msg_size=2**20)
        await socket.prepare(request)
        language = request.query.get("model", "aura-2-thalia-en").rsplit("-", 1)[-1]
        text, sentences = "", 0
        self.active_sockets += 1
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                data = _json(message.data)
                kind = data.get("type")
                if kind == "Speak":
                    text += str(data.get("text", ""))
                elif kind == "Flush":
                    sentences += 1
                    with self._lock:
                        self.spoken.append(text)
                    fault = self.config.speak_fault
                    if fault and sentences > self.config.fault_after_turns:
                        if fault == "drop":
                            await socket.close(code=1011, message=b"fault")
                            break
                        if fault == "hang":
                            await asyncio.sleep(3600)
                    await self._say(socket, text, language)
                    await socket.send_json({"type": "Flushed", "sequence_id": sentences})
                    text = ""
                elif kind == "Clear":
                    text = ""
                    await socket.send_json({"type": "Cleared", "sequence_id": sentences})
                elif kind == "Close":
                    await socket.close()
                    break
        finally:
            self.active_sockets -= 1
        return socket

    async def _say(self, socket: web.WebSocketResponse, text: str, language: str) -> None:
        await asyncio.sleep(self.config.speak_first_chunk_ms / 1000)
        audio = await self._synthesize(text, language)
        for start in range(0, len(audio), SPEAK_CHUNK_BYTES):
            await socket.send_bytes(audio[start : start + SPEAK_CHUNK_BYTES])

    async def _synthesize(self, text: str, language: str) -> bytes:
        if self.config.voice == "tone":
            return tone(len(text) * TONE_SECONDS_PER_CHAR)
        from providers.speech.espeak_stream import EspeakStream

        voice = "en-us" if language == "en" else ""
        chunks = [c async for c in EspeakStream(VoiceSettings(voice=voice)).speak(text)]
        return b"".join(chunks)

    # --- control endpoints (a server in another process) -------------------------------------

    async def _control_transcripts(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.queue_transcript(*[str(t) for t in data.get("transcripts", [])])
        return web.json_response({"queued": len(self._transcripts)})

    async def _control_config(self, request: web.Request) -> web.Response:
        try:
            self.configure(**(await request.json()))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.config))

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})


class _Listener:
    """One `/v1/listen` connection: speech and silence decided frame by frame, in audio time.
    Subclasses speak other providers' protocols over the same decisions."""

    def __init__(
        self, server: FakeDeepgramServer, socket: web.WebSocketResponse, session: ListenSession
    ) -> None:
        self.server, self.socket, self.session = server, socket, session
        params = session.params
        self.endpointing_ms = self._endpointing_ms(params)
        self.utterance_end_ms = int(params.get("utterance_end_ms", "0") or 0)
        self.interim = params.get("interim_results") == "true"
        self.vad_events = params.get("vad_events") == "true"
        self.request_id = str(uuid.uuid4())
        self.audio_seconds = 0.0
        self.buffer = b""
        self.speaking = False
        self.speech_ms = self.silence_ms = 0.0
        self.words: list[str] = []
        self.shown = 0  # words shown in interim results
        self.speech_started_at = self.speech_ended_at = 0.0
        # The same moments in audio time (seconds since the stream began), for word times.
        self.speech_start_audio = self.speech_end_audio = 0.0
        self.since_final_ms: float | None = None  # silence since the last final, for UtteranceEnd
        self.hanging = False

    async def run(self) -> None:
        async for message in self.socket:
            if message.type == WSMsgType.BINARY:
                self.session.audio_messages += 1
                self.buffer += message.data
                while len(self.buffer) >= FRAME_BYTES:
                    frame, self.buffer = self.buffer[:FRAME_BYTES], self.buffer[FRAME_BYTES:]
                    if not await self._frame(frame):
                        return
            elif message.type == WSMsgType.TEXT:
                kind = _json(message.data).get("type")
                if kind == self.CLOSE:
                    self.session.closed_by_client = True
                    await self._send(self._closing())
                    await self.socket.close()
                    return
                if kind == self.FINALIZE and self.speaking:
                    await self._final()

    # --- Deepgram's protocol (subclasses: another provider's) ---------------------------------

    CLOSE, FINALIZE = "CloseStream", "Finalize"

    @staticmethod
    def _endpointing_ms(params: dict[str, str]) -> int:
        return int(params.get("endpointing", "10") or 10)

    def _closing(self) -> dict:
        return {
            "type": "Metadata",
            "request_id": self.request_id,
            "duration": self.audio_seconds,
            "channels": 1,
        }

    def _started(self) -> dict | None:
        if not self.vad_events:
            return None
        return {"type": "SpeechStarted", "channel": [0], "timestamp": round(self.audio_seconds, 2)}

    def _utterance_end(self) -> dict | None:
        return {
            "type": "UtteranceEnd",
            "channel": [0, 1],
            "last_word_end": round(self.audio_seconds, 2),
        }

    async def _frame(self, frame: bytes) -> bool:
        """Take one 20 ms frame; False when the connection was dropped by a fault."""
        self.audio_seconds += FRAME_SECONDS
        if self.hanging:
            return True
        loud = level(mulaw_to_pcm(frame)) >= self.server.config.speech_level
        if loud:
            self.speech_ended_at = time.monotonic()
            self.speech_end_audio = self.audio_seconds
            self.silence_ms = 0.0
            if not self.speaking:
                return await self._speech_started()
            self.speech_ms += FRAME_SECONDS * 1000
            if self.interim and self.speech_ms // self.server.config.interim_every_ms > self.shown:
                await self._interim()
            return True
        if not self.speaking:
            if self.since_final_ms is not None:
                self.since_final_ms += FRAME_SECONDS * 1000
                if self.utterance_end_ms and self.since_final_ms >= self.utterance_end_ms:
                    if (message := self._utterance_end()) is not None:
                        await self._send(message)
                    self.since_final_ms = None
            return True
        self.silence_ms += FRAME_SECONDS * 1000
        if self.silence_ms >= self.endpointing_ms:
            await self._final()
        return True

    async def _speech_started(self) -> bool:
        config = self.server.config
        if config.listen_fault in ("drop", "hang") and (
            len(self.session.turns) >= config.fault_after_turns
        ):
            if config.listen_fault == "drop":
                await self.socket.close(code=1011, message=b"fault")
                return False
            self.hanging = True
            return True
        self.speaking, self.speech_ms, self.shown = True, FRAME_SECONDS * 1000, 0
        self.speech_started_at = time.monotonic()
        self.speech_start_audio = self.audio_seconds - FRAME_SECONDS
        self.words = self.server._next_transcript().split()
        self.since_final_ms = None
        if (message := self._started()) is not None:
            await self._send(message)
        return True

    async def _interim(self) -> None:
        self.shown = min(len(self.words), self.shown + 1)
        if self.shown < len(self.words):
            await self._send(self._results(" ".join(self.words[: self.shown]), final=False))

    async def _final(self) -> None:
        await asyncio.sleep(self.server.config.final_latency_ms / 1000)
        transcript = " ".join(self.words)
        await self._send(self._results(transcript, final=True))
        self.session.turns.append(
            RecognizedTurn(
                transcript,
                self.speech_started_at,
                self.speech_ended_at,
                time.monotonic(),
                self.speech_end_audio,
            )
        )
        self.speaking, self.words, self.since_final_ms = False, [], 0.0

    def _results(self, transcript: str, *, final: bool) -> dict:
        duration = self.speech_ms / 1000
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration, 3),
            "start": round(max(0.0, self.audio_seconds - duration), 3),
            "is_final": final,
            "speech_final": final,
            "from_finalize": False,
            "channel": {
                "alternatives": [
                    {
                        "transcript": transcript,
                        "confidence": 0.98,
                        "words": [
                            {
                                "word": w.lower().strip(",.?!"),
                                "punctuated_word": w,
                                "start": round(start, 3),
                                "end": round(end, 3),
                                "confidence": 0.98,
                            }
                            for w, (start, end) in zip(
                                transcript.split(), self._word_times(transcript), strict=True
                            )
                        ],
                    }
                ]
            },
            "metadata": {"request_id": self.request_id},
        }

    def _word_times(self, transcript: str) -> list[tuple[float, float]]:
        """(start, end) of each word in audio seconds: the speech heard so far, shared evenly."""
        count = len(transcript.split())
        if not count:
            return []
        step = (self.speech_end_audio - self.speech_start_audio) / count
        return [
            (self.speech_start_audio + i * step, self.speech_start_audio + (i + 1) * step)
            for i in range(count)
        ]

    async def _send(self, message: dict) -> None:
        with contextlib.suppress(ConnectionResetError):
            await self.socket.send_json(message)


class _AssemblyAIListener(_Listener):
    """One AssemblyAI Universal Streaming (`/v3/ws`) connection: `Begin`, `SpeechStarted`,
    `Turn` messages (`end_of_turn` false while the words grow, true at the end), `Termination`."""

    CLOSE, FINALIZE = "Terminate", "ForceEndpoint"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.interim = True
        self.turn_order = 0

    @staticmethod
    def _endpointing_ms(params: dict[str, str]) -> int:
        return int(params.get("min_end_of_turn_silence_when_confident", "400") or 400)

    async def run(self) -> None:
        await self._send({"type": "Begin", "id": self.request_id, "expires_at": 0})
        await super().run()

    def _closing(self) -> dict:
        return {
            "type": "Termination",
            "audio_duration_seconds": round(self.audio_seconds),
            "session_duration_seconds": round(self.audio_seconds),
        }

    def _started(self) -> dict | None:
        return {"type": "SpeechStarted", "timestamp": round(self.audio_seconds * 1000)}

    def _utterance_end(self) -> dict | None:
        return None

    def _results(self, transcript: str, *, final: bool) -> dict:
        message = {
            "type": "Turn",
            "turn_order": self.turn_order,
            "turn_is_formatted": False,
            "end_of_turn": final,
            "transcript": transcript,
            "end_of_turn_confidence": 0.9 if final else 0.1,
            "words": [
                {
                    "text": w,
                    "word_is_final": final,
                    "confidence": 0.98,
                    "start": round(start * 1000),
                    "end": round(end * 1000),
                }
                for w, (start, end) in zip(
                    transcript.split(), self._word_times(transcript), strict=True
                )
            ],
        }
        if final:
            self.turn_order += 1
        return message


def _json(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def tone(seconds: float, *, frequency: float = 220.0, loudness: float = 8000.0) -> bytes:
    """mu-law audio of a steady tone (speech-loud, made in microseconds)."""
    samples = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return pcm_to_mulaw((np.sin(2 * np.pi * frequency * samples) * loudness).astype(np.int16))
