"""What the WebSocket transports share: a consumer that carries one conversation, with checked
frames, and a speaker that streams the answer's text out as it arrives.

Frames that are malformed, unknown or too large are logged and skipped: a bad frame never ends
a conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Protocol

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django_scopes import scope

from assistants.models import CallConfig
from calls import services
from calls.engine import Conversation, Reply, Speaker
from calls.models import Call
from core import load
from core.asyncdb import PooledDatabaseConsumer
from core.logging import log_context

logger = logging.getLogger(__name__)


class Output(Protocol):
    """How a socket's protocol frames a streamed answer."""

    async def send_text(self, token: str, *, last: bool) -> None:
        """Send a piece of the answer; `last` closes the assistant's talk cycle."""

    async def end(self, handoff: dict) -> None:
        """End the session; `handoff` says what should happen to the call next."""

    async def switch_language(self, config: CallConfig) -> None:
        """Tell the far end to speak and listen in `config["language"]` from now on."""


class TextSpeaker:
    """Streams an answer as text frames, each piece as it is said: the first at once, and then
    the model's stream is read at most every RELAY_TEXT_BATCH_MS (`read_every`), so that what
    arrived meanwhile leaves as one frame (a frame per token costs more than the token, and
    speech of the first words lasts far longer than the wait)."""

    streams_text = True

    def __init__(self, output: Output) -> None:
        self.output = output
        self._sending = asyncio.Lock()

    @property
    def read_every(self) -> float:
        return max(0.0, settings.RELAY_TEXT_BATCH_MS / 1000)

    async def say(self, reply: Reply, text: str, *, complete: bool = False) -> None:
        await self._send(reply, text, last=complete)

    async def done(self, reply: Reply) -> None:
        if reply.last_sent_at is None:
            await self._send(reply, "", last=True)

    async def stop(self, reply: Reply) -> None:
        """A send under way finishes, so that what is stored is what was sent."""
        async with self._sending:
            pass

    async def cut(self, reply: Reply) -> None:
        """What was streamed was heard; the rest goes out with the closing words."""

    async def end(self, handoff: dict) -> None:
        await self.output.end(handoff)

    async def switch_language(self, config: CallConfig) -> None:
        await self.output.switch_language(config)

    async def _send(self, reply: Reply, text: str, *, last: bool) -> None:
        """Send a piece of the answer (in order: one send at a time)."""
        async with self._sending:
            if reply.interrupted:  # the caller talked over it: what is left is not said
                return
            if text or last:
                await self.output.send_text(text, last=last)
                now = time.monotonic()
                if text:
                    reply.parts.append(text)
                    if reply.first_sent_at is None:
                        reply.first_sent_at = now
                if last:
                    reply.last_sent_at = now


class SessionConsumer(PooledDatabaseConsumer, AsyncWebsocketConsumer):
    """A WebSocket that carries one conversation bound to one Call.

    Subclasses resolve `self.call` in `connect()` and handle messages in `on_<type>` methods
    listed in `MESSAGES`.
    """

    # Nothing is ever sent to a session through the channel layer (events go out through
    # group_send): no channel of its own, so a thousand sessions hold no layer connections.
    channel_layer_alias = None
    call: Call | None = None
    conversation: Conversation | None = None
    MESSAGES: frozenset[str] = frozenset()
    # Messages accepted before the conversation exists.
    BEFORE_SESSION: frozenset[str] = frozenset()
    # Log lines start with this ("relay: ...", "talk: ...").
    LOG_NAME = "session"
    # The field of a message that names its kind ("type"; Media Streams say "event").
    KIND_FIELD = "type"

    # Whether this socket's conversation counts among the sessions the process holds
    # (core.load): from the moment it is bound to its call until the socket closes.
    held = False
    # Whether the call was just answered in this process, so that it has no turns to read.
    first_socket = False

    async def websocket_disconnect(self, message: dict) -> None:
        try:
            await super().websocket_disconnect(message)
        finally:
            self._let_go()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Closed by us (the call ended, a refusal): the session is over for the process's
        count at once, not only when the client's side of the close arrives."""
        try:
            await super().close(code, reason)
        finally:
            self._let_go()

    def _let_go(self) -> None:
        if self.held:
            self.held = False
            load.process_load.session_closed()

    async def disconnect(self, code: int) -> None:
        if self.conversation is None:
            return
        with self.call_context():
            try:
                await self.conversation.close()
            except Exception:
                logger.exception(f"{self.LOG_NAME}: closing failed")

    def max_frame_chars(self) -> int:
        """Longer text frames are skipped unread."""
        return settings.RELAY_MAX_FRAME_CHARS

    @contextmanager
    def call_context(self) -> Iterator[None]:
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

    async def start_conversation(self, call: Call, speaker: Speaker) -> bool:
        """Bind the socket to `call` and read what its conversation needs. A call whose
        conversation cannot start is closed at once (it never stays live)."""
        self.call = call
        conversation = Conversation(call=call, speaker=speaker)
        with self.call_context():
            try:
                await conversation.start(held_by=load.server_id(), first_socket=self.first_socket)
            except services.CallNotLive:
                logger.warning(f"{self.LOG_NAME}: the call ended before its socket; closing")
                return False
            except Exception:
                logger.exception(f"{self.LOG_NAME}: the conversation could not start")
                await conversation.abandon(error="the conversation could not start")
                return False
        self.conversation = conversation
        if not self.held:
            self.held = True
            load.process_load.session_opened()
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        with self.call_context() if self.conversation is not None else nullcontext():
            await self._receive(text_data)

    async def _receive(self, text_data: str | None) -> None:
        if text_data is None:
            logger.warning(f"{self.LOG_NAME}: binary frame ignored")
            return
        if len(text_data) > self.max_frame_chars():
            logger.warning(
                f"{self.LOG_NAME}: oversized frame ignored", extra={"chars": len(text_data)}
            )
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            logger.warning(f"{self.LOG_NAME}: malformed JSON frame ignored")
            return
        kind = message.get(self.KIND_FIELD) if isinstance(message, dict) else None
        handler = getattr(self, f"on_{kind}", None) if kind in self.MESSAGES else None
        if handler is None:
            logger.warning(
                f"{self.LOG_NAME}: unknown message ignored", extra={"kind": str(kind)[:40]}
            )
            return
        if self.conversation is None and kind not in self.BEFORE_SESSION:
            logger.warning(
                f"{self.LOG_NAME}: message before the session ignored", extra={"kind": kind}
            )
            return
        try:
            await handler(message)
        except Exception:
            logger.exception(f"{self.LOG_NAME}: handling a message failed", extra={"kind": kind})
