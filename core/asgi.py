"""Django's ASGI handler for HTTP, with each request's middleware and view in one thread."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse


class SyncRequestHandler(ASGIHandler):
    """Every view of the platform, and most middleware it uses, is synchronous.

    Django's own ASGI handler wraps the middleware chain around an asynchronous core, so that a
    request crosses between the event loop and its thread at each adapter on the way: a
    middleware that is only synchronous, each hook of a middleware in asynchronous mode, each
    `process_view`, the view (six to eight hand-offs for a Twilio webhook). Here the chain is
    built synchronous, as under WSGI, and the request crosses once, into the thread Django
    gives it (its ThreadSensitiveContext, where its database connection lives). An
    asynchronous view would still work: Django adapts it inside the chain.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponse:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
