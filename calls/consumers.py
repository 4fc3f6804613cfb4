"""Twilio ConversationRelay over a WebSocket (`/twilio/relay`): a thin adapter to `calls.relay`.

The handshake is refused unless it carries a valid X-Twilio-Signature for the call named in the
URL (which the voice webhook put there). Frames that are malformed, unknown or too large are
logged and skipped: a bad frame never ends a caller's conversation.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django_scopes import scope, scopes_disabled

from calls.models import Call
from calls.relay import RelaySession
from calls.signatures import websocket_is_signed
from config.logging import log_context

logger = logging.getLogger(__name__)

# Close codes (application range) sent after the handshake was accepted.
CLOSE_WRONG_CALL = 4404


def relay_call_for_handshake(ws_scope: dict) -> Call | None:
    """The relay Call the handshake's URL names, if the request is Twilio's; else None."""
    query = parse_qs(ws_scope.get("query_string", b"").decode("latin-1"))
    try:
        call_id = uuid.UUID(query.get("call", [""])[0])
    except ValueError:
        call_id = None
    # A named bypass: the call tells us the tenant whose token signs the handshake.
    with scopes_disabled():
        call = Call.objects.select_related("tenant").filter(id=call_id).first() if call_id else None
    tenant = call.tenant if call else None
    if not websocket_is_signed(ws_scope, tenant=tenant):
        logger.warning("relay: refused a handshake with a missing or wrong Twilio signature")
        return None
    if call is None or tenant is None or call.mode != Call.Mode.RELAY or not call.is_active:
        logger.warning("relay: refused a handshake for an unknown or finished call")
        return None
    return call


class TwilioOutput:
    """Sends a session's answers as ConversationRelay messages."""

    def __init__(self, consumer: AsyncWebsocketConsumer) -> None:
        self.consumer = consumer

    async def send_text(self, token: str, *, last: bool) -> None:
        await self.consumer.send(json.dumps({"type": "text", "token": token, "last": last}))

    async def end(self, handoff: dict) -> None:
        await self.consumer.send(json.dumps({"type": "end", "handoffData": json.dumps(handoff)}))


class ConversationRelayConsumer(AsyncWebsocketConsumer):
    # Nothing is ever sent to a session through the channel layer (events go out through
    # group_send): no channel of its own, so a thousand sessions hold no layer connections.
    channel_layer_alias = None
    call: Call | None = None
    session: RelaySession | None = None

    async def connect(self) -> None:
        self.call = await database_sync_to_async(relay_call_for_handshake)(self.scope)
        if self.call is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.session is None:
            return
        with self._call_context():
            try:
                await self.session.close()
            except Exception:
                logger.exception("relay: closing the session failed")

    @contextmanager
    def _call_context(self) -> Iterator[None]:
        """The call's tenant scope and log context, for everything a message sets off (tasks
        started inside inherit them)."""
        call = self.call
        if call is None:
            yield
            return
        with (
            scope(tenant=[call.tenant_id]),
            log_context(tenant=call.tenant.slug, call_sid=call.call_sid),
        ):
            yield

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        with self._call_context() if self.session is not None else nullcontext():
            await self._receive(text_data)

    async def _receive(self, text_data: str | None) -> None:
        if text_data is None:
            logger.warning("relay: binary frame ignored")
            return
        if len(text_data) > settings.RELAY_MAX_FRAME_CHARS:
            logger.warning("relay: oversized frame ignored", extra={"chars": len(text_data)})
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            logger.warning("relay: malformed JSON frame ignored")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        handler = getattr(self, f"on_{kind}", None) if kind in self.MESSAGES else None
        if handler is None:
            logger.warning("relay: unknown message ignored", extra={"kind": str(kind)[:40]})
            return
        if kind != "setup" and self.session is None:
            logger.warning("relay: message before setup ignored", extra={"kind": kind})
            return
        try:
            await handler(message)
        except Exception:
            logger.exception("relay: handling a message failed", extra={"kind": kind})

    MESSAGES = frozenset({"setup", "prompt", "interrupt", "dtmf", "error"})

    async def on_setup(self, message: dict) -> None:
        call = self.call
        assert call is not None
        if self.session is not None:
            logger.warning("relay: repeated setup ignored")
            return
        if message.get("callSid") != call.call_sid:
            logger.warning("relay: setup names another call; closing")
            await self.close(code=CLOSE_WRONG_CALL)
            return
        session = RelaySession(call=call, output=TwilioOutput(self))
        with self._call_context():
            await session.start()
        self.session = session

    async def on_prompt(self, message: dict) -> None:
        if message.get("last", True) is False:
            return  # a partial transcript (partialPrompts): wait for the final one
        await self.session.prompt(message.get("voicePrompt"))

    async def on_interrupt(self, message: dict) -> None:
        await self.session.interrupt(message.get("utteranceUntilInterrupt", ""))

    async def on_dtmf(self, message: dict) -> None:
        await self.session.dtmf(message.get("digit"))

    async def on_error(self, message: dict) -> None:
        await self.session.error(message.get("description", ""))
