"""Relay mode: Twilio ConversationRelay on `/twilio/relay`. Twilio does the speech recognition
and the speech; the caller's words arrive as `prompt` messages and the answer streams back as
`text` messages, token by token.

The handshake is refused unless it carries a valid X-Twilio-Signature for the call named in the
URL (which the voice webhook put there); `setup` binds the session to that call.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from calls.engine import clean_text
from calls.models import Call
from calls.selectors import unscoped_call_by_id
from calls.transports.signatures import websocket_is_signed
from calls.transports.sockets import SessionConsumer, TextSpeaker
from core.asyncdb import database_async

logger = logging.getLogger(__name__)

# Close code (application range) sent after the handshake was accepted.
CLOSE_WRONG_CALL = 4404


def relay_call_for_handshake(ws_scope: dict) -> Call | None:
    """The relay Call the handshake's URL names, if the request is Twilio's; else None."""
    query = parse_qs(ws_scope.get("query_string", b"").decode("latin-1"))
    try:
        call_id = uuid.UUID(query.get("call", [""])[0])
    except ValueError:
        call_id = None
    call = unscoped_call_by_id(call_id) if call_id else None
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


class ConversationRelayConsumer(SessionConsumer):
    """Twilio ConversationRelay (`/twilio/relay`)."""

    MESSAGES = frozenset({"setup", "prompt", "interrupt", "dtmf", "error"})
    BEFORE_SESSION = frozenset({"setup"})
    LOG_NAME = "relay"
    handshake_call: Call | None = None

    async def connect(self) -> None:
        self.handshake_call = await database_async(relay_call_for_handshake)(self.scope)
        if self.handshake_call is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        await self.accept()

    async def on_setup(self, message: dict) -> None:
        call = self.handshake_call
        assert call is not None
        if self.conversation is not None:
            logger.warning("relay: repeated setup ignored")
            return
        if message.get("callSid") != call.call_sid:
            logger.warning("relay: setup names another call; closing")
            await self.close(code=CLOSE_WRONG_CALL)
            return
        if not await self.start_conversation(call, TextSpeaker(TwilioOutput(self))):
            await self.close()

    async def on_prompt(self, message: dict) -> None:
        if message.get("last", True) is False:
            return  # a partial transcript (partialPrompts): wait for the final one
        await self.conversation.prompt(message.get("voicePrompt"))

    async def on_interrupt(self, message: dict) -> None:
        await self.conversation.interrupt(message.get("utteranceUntilInterrupt", ""))

    async def on_dtmf(self, message: dict) -> None:
        await self.conversation.dtmf(message.get("digit"))

    async def on_error(self, message: dict) -> None:
        description = clean_text(message.get("description", ""), 500)
        logger.warning("relay: Twilio reported an error", extra={"description": description})
        await self.conversation.error(description)
