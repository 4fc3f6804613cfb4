"""Websocket routes. Consumers validate their own callers in connect().

Twilio's sockets carry no cookie and are checked by their signature: they skip the session and
user look-ups (a thread hand-off each) that the browser's sockets need.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from analytics.consumers import DashboardConsumer
from calls.transports.media import MediaStreamConsumer
from calls.transports.relay import ConversationRelayConsumer
from calls.transports.talk import TalkConsumer

websocket_urlpatterns: list = [
    path("twilio/relay", ConversationRelayConsumer.as_asgi(), name="twilio-relay"),
    path("twilio/media", MediaStreamConsumer.as_asgi(), name="twilio-media"),
    # Browser pages with session auth: only pages of our own hosts may open them.
    path(
        "ws/assistants/<uuid:assistant_id>/talk/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(TalkConsumer.as_asgi())),
        name="assistant-talk-socket",
    ),
    path(
        "ws/dashboard/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi())),
        name="dashboard-socket",
    ),
]
