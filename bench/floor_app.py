"""The platform's ASGI application with routes that do the least a call needs: the floor under
a call's set-up and under an answer (`bench/floor.py`).

`/floor/voice` is a Django view behind the platform's whole middleware stack and HTTP handler
that reads the form and answers with a fixed ConversationRelay TwiML; `/floor/socket` is a
Channels consumer that accepts and parses each frame. `/floor/answer` answers each `prompt` as
ConversationRelay text frames from the LLM, through the platform's own LLM client
(`providers.llm.stream_reply`, read at the same pace as a relay answer), and nothing else: no
conversation, turns, limits or events. `/floor/frames` sends a fixed answer in as many frames,
without the LLM. Everything else is the platform's own routes, served by the same process.
"""

from __future__ import annotations

import json
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from config import asgi
from config.routing import websocket_urlpatterns
from core.load import LoadSampled
from providers import llm

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


_FRAMES = [
    "Yes, we can repair it this week.",
    " A plumber can come",
    " on Thursday morning",
    " or on Friday afternoon,",
    " whichever suits you better.",
    " Shall I book that for you?",
]


class _Frames(AsyncWebsocketConsumer):
    channel_layer_alias = None  # as the platform's sessions: nothing is sent to them by channel

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = json.loads(text_data or "{}")
        if message.get("type") == "prompt":
            await self.answer(str(message.get("voicePrompt", "")))

    async def say(self, token: str, *, last: bool) -> None:
        await self.send(text_data=json.dumps({"type": "text", "token": token, "last": last}))

    async def answer(self, prompt: str) -> None:
        for piece in _FRAMES:
            await self.say(piece, last=False)
        await self.say("", last=True)


class _Answer(_Frames):
    async def answer(self, prompt: str) -> None:
        result = llm.LLMResult()
        async for delta in llm.stream_reply(
            model=settings.LLM_MODELS[0],
            fallback_model="",
            messages=[
                {"role": "system", "content": "You are a plumber's receptionist."},
                {"role": "user", "content": prompt},
            ],
            temperature=0.7,
            max_tokens=200,
            deadline=time.monotonic() + 20,
            result=result,
            read_every=settings.RELAY_TEXT_BATCH_MS / 1000,
        ):
            await self.say(delta, last=False)
        await self.say("", last=True)


urlpatterns = [path("floor/voice", voice), path("", include("config.urls"))]
settings.ROOT_URLCONF = __name__

application = LoadSampled(
    ProtocolTypeRouter(
        {
            "http": asgi.django_asgi_app,
            "websocket": URLRouter(
                [
                    path("floor/socket", Socket.as_asgi()),
                    path("floor/answer", _Answer.as_asgi()),
                    path("floor/frames", _Frames.as_asgi()),
                    *websocket_urlpatterns,
                ]
            ),
        }
    )
)
