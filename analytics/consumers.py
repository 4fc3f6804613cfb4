"""`/ws/dashboard/`: the live feed of call events for the dashboard.

Session authentication (Channels' AuthMiddlewareStack). `?tenant=<id>` narrows the feed to one
tenant; without it a member gets their tenants and platform staff get every tenant. A socket
asking for a tenant its user may not see, or without a logged-in user, is refused (closed
before it is accepted, code 4403). Events come through the channel layer, so those published
by a Celery worker or another server instance arrive too.

What a user may see is checked again whenever it changes (`tenants.signals`): an open socket
leaves the groups of tenants its user lost, joins those gained, and closes with 4403 when the
user may watch nothing any more or its session logged out.
"""

from __future__ import annotations

import json
import logging
from importlib import import_module
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404

from analytics.access import dashboard_view
from analytics.selectors import mask_number
from calls.events import STAFF_GROUP, tenant_group
from core.asyncdb import PooledDatabaseConsumer, database_async
from tenants.access import access_group

logger = logging.getLogger(__name__)

REFUSED = 4403
MAX_FRAME_CHARS = 4096
TEXT_LIMIT = 4000
EVENTS = {"started", "turn", "partial", "language", "interrupted", "ended", "rejected", "error"}


def _groups_for(user, tenant_id: str | None) -> list[str]:
    view = dashboard_view(user, tenant_id)
    if view.tenant_ids is None:
        return [STAFF_GROUP]
    return [tenant_group(t) for t in view.tenant_ids]


def present(message: dict) -> dict | None:
    """The event as the browser gets it: known kinds only, caller numbers masked, text capped."""
    kind = message.get("event")
    if kind not in EVENTS:
        return None
    data = dict(message.get("data") or {})
    if "from_number" in data:
        data["from_number"] = mask_number(str(data["from_number"]))
    if isinstance(data.get("text"), str):
        data["text"] = data["text"][:TEXT_LIMIT]
    return {
        "event": kind,
        "tenant": message.get("tenant"),
        "call": message.get("call"),
        "at": message.get("at"),
        "data": data,
    }


class DashboardConsumer(PooledDatabaseConsumer, AsyncWebsocketConsumer):
    groups_joined: tuple[str, ...] = ()
    tenant_id: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=REFUSED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.tenant_id = (query.get("tenant") or [""])[0][:64] or None
        # Joined before reading the access, so that a change made meanwhile is not missed.
        await self.channel_layer.group_add(access_group(user.pk), self.channel_name)
        try:
            groups = await database_async(_groups_for)(user, self.tenant_id)
        except Http404:
            await self.channel_layer.group_discard(access_group(user.pk), self.channel_name)
            await self.close(code=REFUSED)
            return
        await self._join(groups)
        await self.accept()
        await self.send(text_data=json.dumps({"event": "hello", "tenant": self.tenant_id}))

    async def disconnect(self, code: int) -> None:
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await self.channel_layer.group_discard(access_group(user.pk), self.channel_name)
        await self._join([])

    async def _join(self, groups: list[str]) -> None:
        """Be in exactly `groups`: leave the others first, then join the new ones."""
        for group in set(self.groups_joined) - set(groups):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(groups) - set(self.groups_joined):
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = tuple(groups)

    async def access_changed(self, message: dict) -> None:
        """What the user may see changed: follow it, or close if nothing is left."""
        session = self.scope["session"]
        if message.get("ended_session") and message["ended_session"] == session.session_key:
            await self._revoke("the session logged out")
            return
        # A fresh read of the session: a deleted or invalidated one gives an anonymous user.
        store = import_module(settings.SESSION_ENGINE).SessionStore
        user = await get_user({"session": store(session_key=session.session_key)})
        try:
            groups = await database_async(_groups_for)(user, self.tenant_id)
        except Http404:
            await self._revoke("the user may no longer watch this feed")
            return
        await self._join(groups)

    async def _revoke(self, reason: str) -> None:
        logger.info("dashboard: feed closed", extra={"reason": reason})
        await self._join([])
        await self.close(code=REFUSED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The feed is one-way; a client may only ping. Anything else gets an error frame."""
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self._error("frames must be JSON text under 4 KB")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self._error("malformed JSON")
            return
        if isinstance(frame, dict) and frame.get("type") == "ping":
            await self.send(text_data=json.dumps({"event": "pong"}))
            return
        await self._error('unknown message; only {"type": "ping"} is accepted')

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"event": "protocol_error", "error": message}))

    async def call_event(self, message: dict) -> None:
        payload = present(message)
        if payload is not None:
            await self.send(text_data=json.dumps(payload))

    async def call_events(self, message: dict) -> None:
        """Several events sent as one message (calls/events.py batches them)."""
        for event in message.get("events", []):
            await self.call_event(event)
