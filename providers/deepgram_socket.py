"""One way to open a Deepgram WebSocket, for its live recognition and its streaming speech.

`DEEPGRAM_BASE_URL` points both at another server speaking the same protocols (the development
stand-in, `devtools.fake_deepgram`).
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException


class ProviderError(Protocol):
    def __call__(self, message: str, permanent: bool = False) -> Exception: ...


async def deepgram_socket(path: str, *, api_key: str, error: ProviderError) -> ClientConnection:
    """The WebSocket at `path` (with its query), or `error` saying why not: a missing or
    refused key is permanent, an unreachable server is not."""
    if not api_key:
        raise error("no Deepgram API key", permanent=True)
    try:
        return await connect(
            settings.DEEPGRAM_BASE_URL.rstrip("/") + path,
            additional_headers={"Authorization": f"Token {api_key}"},
            open_timeout=settings.STREAM_PROVIDER_TIMEOUT_SECONDS,
            max_size=2**22,
            compression=None,  # audio does not compress; deflating it costs CPU for nothing
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise error(f"Deepgram refused: HTTP {status}", permanent=status in (401, 403)) from exc
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise error(f"Deepgram unreachable: {type(exc).__name__}: {exc}") from exc
