"""Deepgram Aura streaming speech: `/v1/speak` over a WebSocket, one connection per call. Each
sentence is sent as `Speak` + `Flush`; mu-law 8 kHz audio streams back until `Flushed`.

`DEEPGRAM_BASE_URL` points it at another server speaking the same protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from providers.audio import SAMPLE_RATE
from providers.speech.base import TTSError
from providers.speech.streaming import StreamingVoice, VoiceSettings, VoiceStream

DEFAULT_MODEL = "aura-2-thalia-en"


class AuraStream(VoiceStream):
    def __init__(self, settings: VoiceSettings) -> None:
        self.settings = settings
        self._socket: ClientConnection | None = None

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        socket = await self._connected()
        finished = False
        try:
            await socket.send(json.dumps({"type": "Speak", "text": text}))
            await socket.send(json.dumps({"type": "Flush"}))
            while True:
                message = await self._next(socket)
                if isinstance(message, bytes):
                    yield message
                elif _kind(message) == "Flushed":
                    finished = True
                    return
        except ConnectionClosed as exc:
            raise TTSError(f"Deepgram dropped the speech stream: {exc}") from exc
        finally:
            if not finished:  # stopped mid-sentence: the rest of its audio is not wanted
                await self.close()

    @staticmethod
    async def _next(socket: ClientConnection) -> str | bytes:
        """The next message; a provider silent for too long is a failure, not a wait."""
        try:
            return await asyncio.wait_for(socket.recv(), settings.STREAM_PROVIDER_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            raise TTSError("Deepgram sent no audio in time") from exc

    async def _connected(self) -> ClientConnection:
        if self._socket is not None:
            return self._socket
        if not self.settings.api_key:
            raise TTSError("no Deepgram API key", permanent=True)
        query = urlencode(
            {
                "model": self.settings.voice or DEFAULT_MODEL,
                "encoding": "mulaw",
                "sample_rate": SAMPLE_RATE,
                "container": "none",
            }
        )
        try:
            self._socket = await connect(
                f"{settings.DEEPGRAM_BASE_URL.rstrip('/')}/v1/speak?{query}",
                additional_headers={"Authorization": f"Token {self.settings.api_key}"},
                open_timeout=settings.STREAM_PROVIDER_TIMEOUT_SECONDS,
                max_size=2**22,
                compression=None,  # audio does not compress; deflating it costs CPU for nothing
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise TTSError(
                f"Deepgram refused: HTTP {status}", permanent=status in (401, 403)
            ) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise TTSError(f"Deepgram unreachable: {type(exc).__name__}: {exc}") from exc
        return self._socket

    async def close(self) -> None:
        socket, self._socket = self._socket, None
        if socket is None:
            return
        try:
            await socket.send(json.dumps({"type": "Close"}))
            await asyncio.wait_for(socket.close(), timeout=2)
        except (TimeoutError, ConnectionClosed):
            pass


def _kind(message: str) -> str:
    try:
        data = json.loads(message)
    except ValueError:
        return ""
    return data.get("type", "") if isinstance(data, dict) else ""


class AuraVoice(StreamingVoice):
    name = "deepgram"

    def open(self, settings: VoiceSettings) -> AuraStream:
        return AuraStream(settings)
