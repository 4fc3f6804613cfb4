"""Websocket routes. Consumers validate their own callers in connect()."""

from __future__ import annotations

from django.urls import path

from calls.consumers import ConversationRelayConsumer

websocket_urlpatterns: list = [
    path("twilio/relay", ConversationRelayConsumer.as_asgi(), name="twilio-relay"),
]
