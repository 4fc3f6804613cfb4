"""The browser's "talk to the assistant" page: `/ws/assistants/<id>/talk/`.

Session auth: only members of the assistant's tenant (and platform staff) get in, and an open
socket follows its user's access (`tenants.signals`): it closes with 4403 once the user may no
longer use the assistant or the session logged out. The page's
recognised speech (or typed text) arrives as `prompt` messages; the answer streams back as `text`
messages, then a `latency` message. The conversation is a call of mode "web", started by the
first thing said (opening the page alone is not a call) and counted against the tenant's
concurrent-calls limit like a phone call.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import import_module

from channels.auth import get_user
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import DEFAULT_CHANNEL_LAYER
from django.conf import settings
from django_scopes import scope

from assistants.models import AssistantConfig
from assistants.selectors import assistant_for_user
from calls import services
from calls.models import Call
from calls.transports.sockets import SessionConsumer, TextSpeaker
from core.asyncdb import database_async
from tenants.access import access_group

logger = logging.getLogger(__name__)

# Close codes (application range) sent after the handshake was accepted.
CLOSE_BUSY = 4429
CLOSE_REVOKED = 4403


def web_call_start(*, user, assistant: AssistantConfig) -> tuple[Call | None, str]:
    """(the web call, "") when the tenant has a line free, (None, what to tell the user)."""
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
    BEFORE_SESSION = frozenset({"prompt"})
    LOG_NAME = "talk"
    # The socket listens for access changes of its user (a group of the channel layer).
    channel_layer_alias = DEFAULT_CHANNEL_LAYER
    assistant: AssistantConfig | None = None
    revoked = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: refused (HTTP 403)
            return
        # Joined before the access is read, so that a change made meanwhile is not missed.
        await self.channel_layer.group_add(access_group(user.pk), self.channel_name)
        assistant_id = self.scope["url_route"]["kwargs"]["assistant_id"]
        self.assistant = await database_async(assistant_for_user)(
            user=user, assistant_id=assistant_id
        )
        if self.assistant is None:
            logger.warning("talk: refused a socket for an assistant the user may not use")
            await self.channel_layer.group_discard(access_group(user.pk), self.channel_name)
            await self.close()
            return
        await self.accept()
        self.output = BrowserOutput(self)
        await self.send(
            json.dumps(
                {
                    "type": "ready",
                    "greeting": self.assistant.greeting,
                    "language": self.assistant.language,
                }
            )
        )

    async def disconnect(self, code: int) -> None:
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await self.channel_layer.group_discard(access_group(user.pk), self.channel_name)
        await super().disconnect(code)

    async def access_changed(self, message: dict) -> None:
        """The user's access changed: go on only while they may still use this assistant."""
        session = self.scope["session"]
        if message.get("ended_session") and message["ended_session"] == session.session_key:
            await self._revoke("the session logged out")
            return
        # A fresh read of the session: a deleted or invalidated one gives an anonymous user.
        store = import_module(settings.SESSION_ENGINE).SessionStore
        user = await get_user({"session": store(session_key=session.session_key)})
        assistant = await database_async(assistant_for_user)(
            user=user, assistant_id=self.assistant.id
        )
        if assistant is None:
            await self._revoke("the user may no longer use this assistant")

    async def _revoke(self, reason: str) -> None:
        logger.info("talk: conversation closed", extra={"reason": reason})
        self.revoked = True
        conversation, self.conversation = self.conversation, None
        if conversation is not None:  # the call ends now, with what was said so far
            with self.call_context():
                await conversation.close()
        await self.close(code=CLOSE_REVOKED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.revoked:  # closing: nothing more is answered
            return
        await super().receive(text_data=text_data, bytes_data=bytes_data)

    async def on_prompt(self, message: dict) -> None:
        if self.conversation is None and not await self._start():
            return
        self.output.prompted()
        # The call's scope, also for the first prompt (which started the call just now).
        with self.call_context():
            await self.conversation.prompt(message.get("text"))

    async def _start(self) -> bool:
        """The first thing said starts the call (if a line is free)."""
        call, refusal = await database_async(web_call_start)(
            user=self.scope["user"], assistant=self.assistant
        )
        if call is None:  # a rate limit: say why, then close
            await self.send(json.dumps({"type": "end", "reason": "busy", "message": refusal}))
            await self.close(code=CLOSE_BUSY)
            return False
        if not await self.start_conversation(call, TextSpeaker(self.output)):
            await self.close()
            return False
        return True

    async def on_interrupt(self, message: dict) -> None:
        await self.conversation.interrupt(message.get("heard", ""))
