"""Playing ConversationRelay's side of the WebSocket against the ASGI app (Channels' communicator)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from channels.testing import WebsocketCommunicator
from django.conf import settings

from calls.transports.signatures import sign
from config.asgi import application

TIMEOUT = 10


def relay_socket(response) -> tuple[str, str, dict[str, str]]:
    """(socket URL, action URL, parameters) of the voice webhook's ConversationRelay TwiML."""
    relay = next(response.root.iter("ConversationRelay"))
    connect = next(response.root.iter("Connect"))
    params = {p.get("name"): p.get("value") for p in relay.iter("Parameter")}
    return relay.get("url"), connect.get("action"), params


class RelayClient:
    """Twilio's side of one ConversationRelay session, over a real WebSocket to the ASGI app."""

    def __init__(
        self,
        socket_url: str,
        *,
        auth_token: str | None = None,
        signature: str | None = None,
        signed_url: str | None = None,
    ) -> None:
        parts = urlsplit(socket_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if signature is None:
            signature = sign(
                url=signed_url or socket_url,
                params={},
                auth_token=auth_token or settings.TWILIO_AUTH_TOKEN,
            )
        headers = [(b"host", parts.netloc.encode())]
        if signature:
            headers.append((b"x-twilio-signature", signature.encode()))
        self.communicator = WebsocketCommunicator(application, path, headers=headers)

    async def connect(self) -> tuple[bool, int | None]:
        return await self.communicator.connect(timeout=TIMEOUT)

    async def send(self, message: dict) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def setup(self, call_sid: str, **extra) -> None:
        await self.send(
            {
                "type": "setup",
                "sessionId": "VX" + "0" * 32,
                "accountSid": "AC" + "1" * 32,
                "callSid": call_sid,
                "from": "+15551230000",
                "to": "+14155550100",
                "direction": "inbound",
                "callStatus": "RINGING",
                **extra,
            }
        )

    async def prompt(self, text: str) -> None:
        await self.send({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True})

    async def receive(self, timeout: float = TIMEOUT) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def answer(self, timeout: float = TIMEOUT) -> list[dict]:
        """Frames up to and including the one with `last: true` (or an `end`)."""
        frames = []
        while True:
            frame = await self.receive(timeout)
            frames.append(frame)
            if frame["type"] == "end" or frame.get("last"):
                return frames

    async def nothing_more(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        # Waits for the consumer's disconnect handler (storing, closing the call) to finish.
        await self.communicator.disconnect(timeout=TIMEOUT * 3)


def text_of(frames: list[dict]) -> str:
    return "".join(f.get("token", "") for f in frames if f["type"] == "text")
