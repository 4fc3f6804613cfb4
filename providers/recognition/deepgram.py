"""Deepgram live streaming recognition: `/v1/listen` over a WebSocket, mu-law 8 kHz in, JSON
results out (interim results, endpointing, utterance end, voice-activity events)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection

from providers.audio import SAMPLE_RATE
from providers.deepgram_socket import deepgram_socket
from providers.recognition.base import (
    RecognitionError,
    RecognitionEvent,
    RecognitionSettings,
    Recognizer,
)
from providers.recognition.socket_stream import SocketRecognitionStream, seconds

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


class DeepgramStream(SocketRecognitionStream):
    """Deepgram's messages as events. Final pieces of one turn are joined into its
    `end_of_turn`, which `speech_final` (endpointing) or `UtteranceEnd` brings."""

    PROVIDER = "Deepgram"
    CLOSE_MESSAGE = {"type": "CloseStream"}

    def __init__(self, options: RecognitionSettings) -> None:
        super().__init__(options)
        self._finals: list[str] = []
        self._confidences: list[float] = []
        self._speech_end: float | None = None

    async def open_socket(self) -> ClientConnection:
        return await deepgram_socket(
            listen_url(self.options), api_key=self.options.api_key, error=RecognitionError
        )

    def messages(self, message: dict) -> Iterator[RecognitionEvent]:
        kind = message.get("type")
        if kind == "SpeechStarted":
            yield RecognitionEvent("speech_started")
        elif kind == "Results":
            text, confidence, speech_end = _transcript(message)
            if not message.get("is_final"):
                if text:
                    yield RecognitionEvent("interim", " ".join([*self._finals, text]))
                return
            if text:
                self._finals.append(text)
                self._confidences.append(confidence)
                self._speech_end = speech_end
                yield RecognitionEvent("final", text, confidence, speech_end)
            if message.get("speech_final") and self._finals:
                yield self._end_of_turn()
        elif kind == "UtteranceEnd" and self._finals:
            yield self._end_of_turn()

    def _end_of_turn(self) -> RecognitionEvent:
        event = RecognitionEvent(
            "end_of_turn", " ".join(self._finals), min(self._confidences), self._speech_end
        )
        self._finals, self._confidences, self._speech_end = [], [], None
        return event


def _transcript(message: dict) -> tuple[str, float, float | None]:
    """The best alternative's words, its confidence, and where its last word ended."""
    try:
        best = message["channel"]["alternatives"][0]
        text, confidence = (
            str(best.get("transcript", "")).strip(),
            float(best.get("confidence", 0.0)),
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return "", 0.0, None
    words = best.get("words")
    last = words[-1] if isinstance(words, list) and words else None
    return text, confidence, seconds(last.get("end")) if isinstance(last, dict) else None


class DeepgramRecognizer(Recognizer):
    name = "deepgram"

    def stream(self, options: RecognitionSettings) -> DeepgramStream:
        return DeepgramStream(options)
