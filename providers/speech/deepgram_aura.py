"""Deepgram Aura streaming speech: `/v1/speak` over a WebSocket, one connection per call. Each
sentence is sent as `Speak` + `Flush`; mu-law 8 kHz audio streams back until `Flushed`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from providers.audio import SAMPLE_RATE
from providers.deepgram_socket import deepgram_socket
from providers.speech.base import TTSError
from providers.speech.streaming import StreamingVoice, VoiceSettings, VoiceStream

DEFAULT_MODEL = "aura-2-thalia-en"


class AuraStream(VoiceStream):
    def __init__(self, options: VoiceSettings) -> None:
        self.options = options
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
        query = urlencode(
            {
                "model": self.options.voice or DEFAULT_MODEL,
                "encoding": "mulaw",
                "sample_rate": SAMPLE_RATE,
                "container": "none",
            }
        )
        self._socket = await deepgram_socket(
            f"/v1/speak?{query}", api_key=self.options.api_key, error=TTSError
        )
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
