"""Deepgram live streaming recognition: `/v1/listen` over a WebSocket, mu-law 8 kHz in, JSON
results out (interim results, endpointing, utterance end, voice-activity events)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from providers.audio import SAMPLE_RATE
from providers.deepgram_socket import deepgram_socket
from providers.recognition.base import (
    RecognitionError,
    RecognitionEvent,
    RecognitionSettings,
    RecognitionStream,
    Recognizer,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "nova-3"


def listen_url(options: RecognitionSettings) -> str:
    """`/v1/listen` with the call's options as query parameters."""
    model = options.model or DEFAULT_MODEL
    params: list[tuple[str, str]] = [
        ("encoding", "mulaw"),
        ("sample_rate", str(SAMPLE_RATE)),
        ("channels", "1"),
        ("model", model),
        ("language", options.language),
        ("interim_results", "true"),
        ("endpointing", str(options.endpointing_ms)),
        ("utterance_end_ms", str(options.utterance_end_ms)),
        ("vad_events", "true"),
        ("smart_format", "true"),
    ]
    # Nova-3 takes key terms; the older models take keywords.
    hint = "keyterm" if model.startswith("nova-3") else "keywords"
    params += [(hint, keyword) for keyword in options.keywords]
    return f"/v1/listen?{urlencode(params)}"


class DeepgramStream(RecognitionStream):
    def __init__(self, options: RecognitionSettings) -> None:
        self.options = options
        self._socket: ClientConnection | None = None
        self._closing = False
        self._pending = b""
        # Audio goes out in chunks of STREAM_RECOGNITION_CHUNK_MS: a message per 20 ms frame
        # costs a system call each, for no gain in how soon the words come back.
        self._chunk_bytes = SAMPLE_RATE * settings.STREAM_RECOGNITION_CHUNK_MS // 1000

    async def __aenter__(self) -> DeepgramStream:
        self._socket = await deepgram_socket(
            listen_url(self.options), api_key=self.options.api_key, error=RecognitionError
        )
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
            raise RecognitionError(f"Deepgram closed the stream: {exc}") from exc

    async def events(self) -> AsyncIterator[RecognitionEvent]:
        """Deepgram's messages as events. Final pieces of one turn are joined into its
        `end_of_turn`, which `speech_final` (endpointing) or `UtteranceEnd` brings."""
        assert self._socket is not None
        finals: list[str] = []
        confidences: list[float] = []
        try:
            async for raw in self._socket:
                message = _parse(raw)
                kind = message.get("type")
                if kind == "SpeechStarted":
                    yield RecognitionEvent("speech_started")
                elif kind == "Results":
                    text, confidence = _transcript(message)
                    if not message.get("is_final"):
                        if text:
                            yield RecognitionEvent("interim", " ".join([*finals, text]))
                        continue
                    if text:
                        finals.append(text)
                        confidences.append(confidence)
                        yield RecognitionEvent("final", text, confidence)
                    if message.get("speech_final") and finals:
                        yield RecognitionEvent("end_of_turn", " ".join(finals), min(confidences))
                        finals, confidences = [], []
                elif kind == "UtteranceEnd" and finals:
                    yield RecognitionEvent("end_of_turn", " ".join(finals), min(confidences))
                    finals, confidences = [], []
        except ConnectionClosed as exc:
            if not self._closing:
                raise RecognitionError(f"Deepgram dropped the stream: {exc}") from exc
        if not self._closing:
            raise RecognitionError("Deepgram ended the stream")

    async def close(self) -> None:
        self._closing = True
        socket, self._socket = self._socket, None
        if socket is None:
            return
        try:
            await socket.send(json.dumps({"type": "CloseStream"}))
        except ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(socket.close(), timeout=2)
        except (TimeoutError, ConnectionClosed):
            pass


def _parse(raw: str | bytes) -> dict:
    try:
        message = json.loads(raw)
    except ValueError:
        logger.warning("deepgram: a message that is not JSON was ignored")
        return {}
    return message if isinstance(message, dict) else {}


def _transcript(message: dict) -> tuple[str, float]:
    try:
        best = message["channel"]["alternatives"][0]
        return str(best.get("transcript", "")).strip(), float(best.get("confidence", 0.0))
    except (KeyError, IndexError, TypeError, ValueError):
        return "", 0.0


class DeepgramRecognizer(Recognizer):
    name = "deepgram"

    def stream(self, options: RecognitionSettings) -> DeepgramStream:
        return DeepgramStream(options)
