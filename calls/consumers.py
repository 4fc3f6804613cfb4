"""Conversations over WebSockets, thin adapters to `calls.relay`:

- `/twilio/relay`: Twilio ConversationRelay. The handshake is refused unless it carries a valid
  X-Twilio-Signature for the call named in the URL (which the voice webhook put there).
- `/ws/assistants/<id>/talk/`: the browser page that talks to an assistant. Session auth; only
  members of the assistant's tenant (and platform staff) get in; the talk is a call of mode "web".

Frames that are malformed, unknown or too large are logged and skipped: a bad frame never ends a
conversation.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django_scopes import scope

from assistants.selectors import assistant_for_user
from calls import services
from calls.models import Call
from calls.relay import RelaySession
from calls.selectors import unscoped_call_by_id
from calls.signatures import websocket_is_signed
from config.asyncdb import database_async
from config.logging import log_context

logger = logging.getLogger(__name__)

# Close codes (application range) sent after the handshake was accepted.
CLOSE_WRONG_CALL = 4404
CLOSE_BUSY = 4429


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


class SessionConsumer(AsyncWebsocketConsumer):
    """A WebSocket that carries one conversation (`RelaySession`) bound to one Call.

    Subclasses resolve `self.call` in `connect()` and handle messages in `on_<type>` methods
    listed in `MESSAGES`. Frames that are malformed, unknown or too large are logged and
    skipped: a bad frame never ends a conversation.
    """

    # Nothing is ever sent to a session through the channel layer (events go out through
    # group_send): no channel of its own, so a thousand sessions hold no layer connections.
    channel_layer_alias = None
    call: Call | None = None
    session: RelaySession | None = None
    MESSAGES: frozenset[str] = frozenset()
    # Messages accepted before the session exists.
    BEFORE_SESSION: frozenset[str] = frozenset()
    # Log lines start with this ("relay: ...", "talk: ...").
    LOG_NAME = "session"

    async def disconnect(self, code: int) -> None:
        if self.session is None:
            return
        with self._call_context():
            try:
                await self.session.close()
            except Exception:
                logger.exception(f"{self.LOG_NAME}: closing failed")

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
            logger.warning(f"{self.LOG_NAME}: binary frame ignored")
            return
        if len(text_data) > settings.RELAY_MAX_FRAME_CHARS:
            logger.warning(
                f"{self.LOG_NAME}: oversized frame ignored", extra={"chars": len(text_data)}
            )
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            logger.warning(f"{self.LOG_NAME}: malformed JSON frame ignored")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        handler = getattr(self, f"on_{kind}", None) if kind in self.MESSAGES else None
        if handler is None:
            logger.warning(
                f"{self.LOG_NAME}: unknown message ignored", extra={"kind": str(kind)[:40]}
            )
            return
        if self.session is None and kind not in self.BEFORE_SESSION:
            logger.warning(
                f"{self.LOG_NAME}: message before the session ignored", extra={"kind": kind}
            )
            return
        try:
            await handler(message)
        except Exception:
            logger.exception(f"{self.LOG_NAME}: handling a message failed", extra={"kind": kind})


class ConversationRelayConsumer(SessionConsumer):
    """Twilio ConversationRelay (`/twilio/relay`)."""

    BEFORE_SESSION = frozenset({"setup"})
    LOG_NAME = "relay"

    async def connect(self) -> None:
        self.call = await database_async(relay_call_for_handshake)(self.scope)
        if self.call is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        await self.accept()

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


# --- the browser's "talk to the assistant" page -----------------------------------------------


def web_call_start(*, user, assistant_id: object) -> tuple[Call | None, str]:
    """(the web call, "") for a member of the assistant's tenant, (None, why) otherwise."""
    assistant = assistant_for_user(user=user, assistant_id=assistant_id)
    if assistant is None:
        return None, "not-found"
    with scope(tenant=[assistant.tenant_id]):
        started = services.call_start_web(assistant=assistant, user=user)
    if isinstance(started, Call):
        return started, ""
    return None, started.message


class BrowserOutput:
    """Sends a session's answers to the page, with the turn's latency once it is complete."""

    def __init__(self, consumer: AsyncWebsocketConsumer) -> None:
        self.consumer = consumer
        self.prompt_at: float | None = None
        self.first_at: float | None = None

    def prompted(self) -> None:
        self.prompt_at, self.first_at = time.monotonic(), None

    async def send_text(self, token: str, *, last: bool) -> None:
        now = time.monotonic()
        if token and self.first_at is None:
            self.first_at = now
        await self.consumer.send(json.dumps({"type": "text", "token": token, "last": last}))
        if last and self.prompt_at is not None:
            first = self.first_at if self.first_at is not None else now
            await self.consumer.send(
                json.dumps(
                    {
                        "type": "latency",
                        "first_token_ms": round((first - self.prompt_at) * 1000),
                        "total_ms": round((now - self.prompt_at) * 1000),
                    }
                )
            )
            self.prompt_at = None

    async def end(self, handoff: dict) -> None:
        await self.consumer.send(json.dumps({"type": "end", **handoff}))
        await self.consumer.close()


class TalkConsumer(SessionConsumer):
    """Talk to an assistant from the browser: `prompt` and `interrupt` in, streamed text out."""

    MESSAGES = frozenset({"prompt", "interrupt"})
    LOG_NAME = "talk"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: refused (HTTP 403)
            return
        assistant_id = self.scope["url_route"]["kwargs"]["assistant_id"]
        call, refusal = await database_async(web_call_start)(user=user, assistant_id=assistant_id)
        if refusal == "not-found":
            logger.warning("talk: refused a socket for an assistant the user may not use")
            await self.close()
            return
        await self.accept()
        if call is None:  # a rate limit: say why, then close
            await self.send(json.dumps({"type": "end", "reason": "busy", "message": refusal}))
            await self.close(code=CLOSE_BUSY)
            return
        self.call = call
        self.output = BrowserOutput(self)
        session = RelaySession(call=call, output=self.output)
        with self._call_context():
            await session.start()
        self.session = session
        await self.send(
            json.dumps(
                {
                    "type": "ready",
                    "call": str(call.id),
                    "greeting": call.config_snapshot.get("greeting", ""),
                    "language": call.config_snapshot.get("language", "en-US"),
                }
            )
        )

    async def on_prompt(self, message: dict) -> None:
        self.output.prompted()
        await self.session.prompt(message.get("text"))

    async def on_interrupt(self, message: dict) -> None:
        await self.session.interrupt(message.get("heard", ""))
