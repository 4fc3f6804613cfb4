"""The platform's ASGI application with two routes that do nothing: the floor under a call's
set-up (`bench/floor.py`).

`/floor/voice` is a Django view behind the platform's whole middleware stack and HTTP handler
that reads the form and answers with a fixed ConversationRelay TwiML; `/floor/socket` is a
Channels consumer that accepts and parses each frame. Everything else is the platform's own
routes, served by the same process.
"""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from config import asgi
from config.routing import websocket_urlpatterns
from core.load import LoadSampled

_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><ConversationRelay '
    'url="wss://example.com/floor/socket" welcomeGreeting="Hello."/></Connect></Response>'
)


@csrf_exempt
def voice(request: HttpRequest) -> HttpResponse:
    request.POST.get("CallSid")
    return HttpResponse(_TWIML, content_type="text/xml")


class Socket(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        json.loads(text_data or "{}")


urlpatterns = [path("floor/voice", voice), path("", include("config.urls"))]
settings.ROOT_URLCONF = __name__

application = LoadSampled(
    ProtocolTypeRouter(
        {
            "http": asgi.django_asgi_app,
            "websocket": URLRouter(
                [path("floor/socket", Socket.as_asgi()), *websocket_urlpatterns]
            ),
        }
    )
)
