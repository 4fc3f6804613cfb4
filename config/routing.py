"""Websocket routes. Consumers validate their own callers in connect()."""

from __future__ import annotations

websocket_urlpatterns: list = []
