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
from typing import NamedTuple
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import transaction
from django.dispatch import receiver

from assistants.models import CallConfig
from calls import signals
from calls.engine import clean_text
from calls.models import Call
from calls.selectors import unscoped_call_by_id
from calls.transports import answered
from calls.transports.signatures import websocket_is_signed
from calls.transports.sockets import SessionConsumer, TextSpeaker
from calls.transports.twiml import relay_hears_every_language
from core import caching
from core.asyncdb import database_async
from tenants.ratelimits import STALE_CALL_SECONDS

logger = logging.getLogger(__name__)

# Close code (application range) sent after the handshake was accepted.
CLOSE_WRONG_CALL = 4404


class Handshake(NamedTuple):
    call: Call
    # The call was kept by its voice webhook in this process: this is its first socket, and it
    # has no turns yet.
    first_socket: bool = False


def call_for_handshake(ws_scope: dict, *, mode: str) -> Handshake | None:
    """The live Call of `mode` that the handshake's URL names, if Twilio signed the request
    with that call's tenant's token; else None."""
    query = parse_qs(ws_scope.get("query_string", b"").decode("latin-1"))
    try:
        call_id = uuid.UUID(query.get("call", [""])[0])
    except ValueError:
        call_id = None
    kept = answered.take(call_id) if call_id else None
    call = kept or (unscoped_call_by_id(call_id) if call_id else None)
    tenant = call.tenant if call else None
    if not websocket_is_signed(ws_scope, tenant=tenant):
        logger.warning(f"{mode}: refused a handshake with a missing or wrong Twilio signature")
        return None
    if call is None or tenant is None or call.mode != mode or not call.is_active:
        logger.warning(f"{mode}: refused a handshake for an unknown or finished call")
        return None
    return Handshake(call, first_socket=kept is not None)


def socket_call_claim(ws_scope: dict, *, mode: str, holder: str) -> Handshake | None:
    """The live Call of `mode` that a signed handshake names, with its one live socket taken
    for `holder` (one trip to the database pool); None when the handshake is refused."""
    handshake = call_for_handshake(ws_scope, mode=mode)
    if handshake is not None and not live_socket_claim(handshake.call, holder):
        logger.warning(f"{mode}: refused a socket for a call another socket has, or that ended")
        return None
    return handshake


def live_socket_claim(call: Call, holder: str) -> bool:
    """Take the call's one live socket (relay or stream) for `holder`; False when another
    socket has it (a replayed handshake) or the call has ended, in any process (a call kept by
    its webhook here is not read again). Kept until released, or for as long as a line is held."""
    try:
        return caching.shared_cache().add(live_socket_key(call), holder, timeout=STALE_CALL_SECONDS)
    except Exception:  # the cache is down: let Twilio's socket in
        logger.warning("live socket check unavailable", exc_info=True)
        return True


@receiver(signals.call_ended, dispatch_uid="live-socket-call-ended")
def _no_socket_after_the_end(sender: object, call: Call, **kwargs: object) -> None:
    """A call that ended (in whatever process) takes no socket any more."""
    if call.mode not in Call.SOCKET_MODES:
        return

    def mark() -> None:
        try:
            caching.shared_cache().set(live_socket_key(call), ENDED, timeout=ENDED_MARK_SECONDS)
        except Exception:
            logger.warning("could not mark the call's socket as ended", exc_info=True)

    transaction.on_commit(mark)


ENDED = "ended"
# Long enough for the webhook's process to let go of the call it kept (a socket arriving
# later reads the call, and finds it over).
ENDED_MARK_SECONDS = 2 * answered.HANDOFF_SECONDS


def live_socket_release(call: Call, holder: str) -> None:
    try:
        cache = caching.shared_cache()
        if cache.get(live_socket_key(call)) == holder:
            cache.delete(live_socket_key(call))
    except Exception:
        logger.warning("could not release the live socket", exc_info=True)


def live_socket_key(call: Call) -> str:
    return f"call:live-socket:{call.id}"


class TwilioOutput:
    """Sends a session's answers as ConversationRelay messages."""

    def __init__(self, consumer: AsyncWebsocketConsumer) -> None:
        self.consumer = consumer

    async def send_text(self, token: str, *, last: bool) -> None:
        await self.consumer.send(json.dumps({"type": "text", "token": token, "last": last}))

    async def end(self, handoff: dict) -> None:
        await self.consumer.send(json.dumps({"type": "end", "handoffData": json.dumps(handoff)}))

    async def switch_language(self, config: CallConfig) -> None:
        """Speech (with the voice of the TwiML's <Language> for it) and recognition switch;
        recognition that hears every language ("multi") is left as it is."""
        message = {"type": "language", "ttsLanguage": config["language"]}
        if not relay_hears_every_language(config):
            message["transcriptionLanguage"] = config["language"]
        await self.consumer.send(json.dumps(message))


class ConversationRelayConsumer(SessionConsumer):
    """Twilio ConversationRelay (`/twilio/relay`)."""

    MESSAGES = frozenset({"setup", "prompt", "interrupt", "dtmf", "error"})
    BEFORE_SESSION = frozenset({"setup"})
    LOG_NAME = "relay"
    handshake_call: Call | None = None

    async def connect(self) -> None:
        self.holder = uuid.uuid4().hex
        handshake = await database_async(socket_call_claim)(
            self.scope, mode=Call.Mode.RELAY, holder=self.holder
        )
        if handshake is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        self.handshake_call, self.first_socket = handshake
        await self.accept()

    async def disconnect(self, code: int) -> None:
        try:
            await super().disconnect(code)
        finally:
            if self.handshake_call is not None:
                await database_async(live_socket_release)(self.handshake_call, self.holder)

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
