"""AssemblyAI Universal Streaming recognition: `/v3/ws` over a WebSocket, mu-law 8 kHz in, `Turn`
messages out (the words so far while the turn grows, `end_of_turn` when its model says the
caller is done; key terms as `keyterms_prompt`).

`ASSEMBLYAI_BASE_URL` points it at another server speaking the same protocol (the development
stand-in, `devtools.fake_deepgram`, serves it too).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from providers.audio import SAMPLE_RATE
from providers.recognition.base import (
    RecognitionError,
    RecognitionEvent,
    RecognitionSettings,
    RecognitionStream,
    Recognizer,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "universal-streaming-english"
# AssemblyAI takes audio in messages of 50 to 1000 ms.
MIN_CHUNK_MS = 50


def streaming_path(options: RecognitionSettings) -> str:
    """`/v3/ws` with the call's options as query parameters."""
    params = {
        "sample_rate": SAMPLE_RATE,
        "encoding": "pcm_mulaw",
        "speech_model": options.model or DEFAULT_MODEL,
        "min_end_of_turn_silence_when_confident": options.endpointing_ms,
        "max_turn_silence": max(options.endpointing_ms, options.utterance_end_ms),
    }
    if options.keywords:
        params["keyterms_prompt"] = json.dumps(list(options.keywords))
    return f"/v3/ws?{urlencode(params)}"


class AssemblyAIStream(RecognitionStream):
    def __init__(self, options: RecognitionSettings) -> None:
        self.options = options
        self._socket: ClientConnection | None = None
        self._closing = False
        self._pending = b""
        chunk_ms = max(MIN_CHUNK_MS, settings.STREAM_RECOGNITION_CHUNK_MS)
        self._chunk_bytes = SAMPLE_RATE * chunk_ms // 1000

    async def __aenter__(self) -> AssemblyAIStream:
        if not self.options.api_key:
            raise RecognitionError("no AssemblyAI API key", permanent=True)
        try:
            self._socket = await connect(
                settings.ASSEMBLYAI_BASE_URL.rstrip("/") + streaming_path(self.options),
                additional_headers={"Authorization": self.options.api_key},
                open_timeout=settings.STREAM_PROVIDER_TIMEOUT_SECONDS,
                compression=None,  # audio does not compress
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise RecognitionError(
                f"AssemblyAI refused: HTTP {status}", permanent=status in (401, 403)
            ) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise RecognitionError(f"AssemblyAI unreachable: {type(exc).__name__}: {exc}") from exc
        return self

    async def send(self, audio: bytes) -> None:
        if self._socket is None:
            raise RecognitionError("the recognition stream is not open")
        self._pending += audio
        if len(self._pending) < self._chunk_bytes:
            return
        audio, self._pending = self._pending, b""
        try:
            await self._socket.send(audio)
        except ConnectionClosed as exc:
            raise RecognitionError(f"AssemblyAI closed the stream: {exc}") from exc

    async def events(self) -> AsyncIterator[RecognitionEvent]:
        assert self._socket is not None
        try:
            async for raw in self._socket:
                message = _parse(raw)
                kind = message.get("type")
                if kind == "SpeechStarted":
                    yield RecognitionEvent("speech_started")
                elif kind == "Turn":
                    text = str(message.get("transcript", "")).strip()
                    if not message.get("end_of_turn"):
                        if text:
                            yield RecognitionEvent("interim", text)
                    elif text:
                        confidence = _confidence(message)
                        yield RecognitionEvent("final", text, confidence)
                        yield RecognitionEvent("end_of_turn", text, confidence)
        except ConnectionClosed as exc:
            if not self._closing:
                raise RecognitionError(f"AssemblyAI dropped the stream: {exc}") from exc
        if not self._closing:
            raise RecognitionError("AssemblyAI ended the stream")

    async def close(self) -> None:
        self._closing = True
        socket, self._socket = self._socket, None
        if socket is None:
            return
        try:
            await socket.send(json.dumps({"type": "Terminate"}))
            await asyncio.wait_for(socket.close(), timeout=2)
        except (TimeoutError, ConnectionClosed):
            pass


def _parse(raw: str | bytes) -> dict:
    try:
        message = json.loads(raw)
    except ValueError:
        logger.warning("assemblyai: a message that is not JSON was ignored")
        return {}
    return message if isinstance(message, dict) else {}


def _confidence(message: dict) -> float | None:
    words = message.get("words")
    if not isinstance(words, list) or not words:
        return None
    try:
        return min(float(w.get("confidence", 0.0)) for w in words if isinstance(w, dict))
    except (TypeError, ValueError):
        return None


class AssemblyAIRecognizer(Recognizer):
    name = "assemblyai"

    def stream(self, options: RecognitionSettings) -> AssemblyAIStream:
        return AssemblyAIStream(options)
