"""AssemblyAI Universal Streaming recognition: `/v3/ws` over a WebSocket, mu-law 8 kHz in, `Turn`
messages out (the words so far while the turn grows, `end_of_turn` when its model says the
caller is done; key terms as `keyterms_prompt`).

`ASSEMBLYAI_BASE_URL` points it at another server speaking the same protocol (the development
stand-in, `devtools.fake_deepgram`, serves it too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from providers.audio import SAMPLE_RATE
from providers.recognition.base import (
    RecognitionError,
    RecognitionEvent,
    RecognitionSettings,
    Recognizer,
)
from providers.recognition.socket_stream import SocketRecognitionStream, seconds

DEFAULT_MODEL = "universal-streaming-english"


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


class AssemblyAIStream(SocketRecognitionStream):
    PROVIDER = "AssemblyAI"
    CLOSE_MESSAGE = {"type": "Terminate"}
    MIN_CHUNK_MS = 50  # AssemblyAI takes audio in messages of 50 to 1000 ms

    async def open_socket(self) -> ClientConnection:
        if not self.options.api_key:
            raise RecognitionError("no AssemblyAI API key", permanent=True)
        try:
            return await connect(
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

    def messages(self, message: dict) -> Iterator[RecognitionEvent]:
        kind = message.get("type")
        if kind == "SpeechStarted":
            yield RecognitionEvent("speech_started")
        elif kind == "Turn":
            text = str(message.get("transcript", "")).strip()
            if not message.get("end_of_turn"):
                if text:
                    yield RecognitionEvent("interim", text)
            elif text:
                confidence, speech_end = _words(message)
                yield RecognitionEvent("final", text, confidence, speech_end)
                yield RecognitionEvent("end_of_turn", text, confidence, speech_end)


def _words(message: dict) -> tuple[float | None, float | None]:
    """The turn's lowest word confidence, and where its last word ended (ms in AssemblyAI's
    messages, seconds here)."""
    words = message.get("words")
    words = [w for w in words if isinstance(w, dict)] if isinstance(words, list) else []
    if not words:
        return None, None
    try:
        confidence = min(float(w.get("confidence", 0.0)) for w in words)
    except (TypeError, ValueError):
        confidence = None
    return confidence, seconds(words[-1].get("end"), scale=0.001)


class AssemblyAIRecognizer(Recognizer):
    name = "assemblyai"

    def stream(self, options: RecognitionSettings) -> AssemblyAIStream:
        return AssemblyAIStream(options)
