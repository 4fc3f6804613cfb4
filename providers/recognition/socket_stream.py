"""What the WebSocket recognition providers share: caller audio sent in chunks, the provider's
JSON messages read as events, and a close the provider's way."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from providers.audio import SAMPLE_RATE
from providers.recognition.base import (
    RecognitionError,
    RecognitionEvent,
    RecognitionSettings,
    RecognitionStream,
)

logger = logging.getLogger(__name__)


class SocketRecognitionStream(RecognitionStream):
    """One call's recognition over a provider's WebSocket.

    Audio goes out in chunks of STREAM_RECOGNITION_CHUNK_MS: a message per 20 ms frame costs a
    system call each, for no gain in how soon the words come back. The caller's voice itself
    (`send(..., voiced=True)`) may wait for chunks of STREAM_RECOGNITION_VOICE_CHUNK_MS: the end
    of a turn is heard in the silence after it, which goes at the shorter length. While the
    line is quiet (`quiet=True`: nobody has spoken for a while) the chunks grow to
    STREAM_RECOGNITION_QUIET_CHUNK_MS: nothing waits for words then, and the first voiced
    frame sends what was held.

    Subclasses name the provider, open the socket, and turn each message into events.
    """

    PROVIDER = ""
    CLOSE_MESSAGE: dict = {}
    MIN_CHUNK_MS = 20

    def __init__(self, options: RecognitionSettings) -> None:
        self.options = options
        self._socket: ClientConnection | None = None
        self._closing = False
        self._pending = bytearray()
        chunk_ms = max(self.MIN_CHUNK_MS, settings.STREAM_RECOGNITION_CHUNK_MS)
        voice_ms = max(chunk_ms, settings.STREAM_RECOGNITION_VOICE_CHUNK_MS)
        quiet_ms = max(chunk_ms, settings.STREAM_RECOGNITION_QUIET_CHUNK_MS)
        self._chunk_bytes = SAMPLE_RATE * chunk_ms // 1000
        self._voice_chunk_bytes = SAMPLE_RATE * voice_ms // 1000
        self._quiet_chunk_bytes = SAMPLE_RATE * quiet_ms // 1000

    async def __aenter__(self) -> SocketRecognitionStream:
        self._socket = await self.open_socket()
        return self

    async def open_socket(self) -> ClientConnection:
        raise NotImplementedError

    def messages(self, message: dict) -> Iterator[RecognitionEvent]:
        """The events one provider message says."""
        raise NotImplementedError

    async def send(self, audio: bytes, *, voiced: bool = False, quiet: bool = False) -> None:
        if self._socket is None:
            raise RecognitionError("the recognition stream is not open")
        pending = self._pending
        pending += audio
        if voiced:
            size = self._voice_chunk_bytes
        else:
            size = self._quiet_chunk_bytes if quiet else self._chunk_bytes
        if len(pending) < size:
            return
        chunk = bytes(pending)
        pending.clear()
        try:
            await self._socket.send(chunk)
        except ConnectionClosed as exc:
            raise RecognitionError(f"{self.PROVIDER} closed the stream: {exc}") from exc

    async def events(self) -> AsyncIterator[RecognitionEvent]:
        assert self._socket is not None
        try:
            async for raw in self._socket:
                for event in self.messages(self._parse(raw)):
                    yield event
        except ConnectionClosed as exc:
            if not self._closing:
                raise RecognitionError(f"{self.PROVIDER} dropped the stream: {exc}") from exc
        if not self._closing:
            raise RecognitionError(f"{self.PROVIDER} ended the stream")

    async def close(self) -> None:
        self._closing = True
        socket, self._socket = self._socket, None
        if socket is None:
            return
        try:
            await socket.send(json.dumps(self.CLOSE_MESSAGE))
        except ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(socket.close(), timeout=2)
        except (TimeoutError, ConnectionClosed):
            pass

    def _parse(self, raw: str | bytes) -> dict:
        try:
            message = json.loads(raw)
        except ValueError:
            logger.warning("%s: a message that is not JSON was ignored", self.PROVIDER)
            return {}
        return message if isinstance(message, dict) else {}


def seconds(value: object, *, scale: float = 1.0) -> float | None:
    """A provider's time as seconds (`scale` 0.001 for milliseconds); None if it is not one."""
    try:
        return float(value) * scale  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
