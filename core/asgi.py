"""Django's ASGI handler for HTTP, with each request's middleware and view in one thread, and
the request threads kept for the next requests."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse

# Idle request threads kept beyond this many are let go.
IDLE_LANES_KEPT = 64

# Set (in a list the request's tasks share) when a request stopped waiting for its view: the
# client went away while the view was still running in the lane's thread.
_abandoned: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("request_abandoned")


class RequestLanes:
    """Single-thread executors for HTTP requests, reused.

    Django runs each request's synchronous code in a thread of its own: its
    ThreadSensitiveContext makes a new thread for the request, and one more to join it when
    the request is done. Here a request borrows an idle thread (a lane) and gives it back, as a
    WSGI server's worker threads serve one request after another. A lane serves one request at
    a time; there are as many as requests in flight at once. A lane whose request stopped
    waiting for its view (the client went away) is let go, not reused: its thread may still be
    running that view. Used from the event loop only.
    """

    def __init__(self, *, keep: int = IDLE_LANES_KEPT) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []

    def take(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, lane: ThreadPoolExecutor, *, busy: bool = False) -> None:
        if not busy and len(self.idle) < self.keep:
            self.idle.append(lane)
        else:
            lane.shutdown(wait=False)


class SyncRequestHandler(ASGIHandler):
    """Every view of the platform, and most middleware it uses, is synchronous.

    Django's own ASGI handler wraps the middleware chain around an asynchronous core, so that a
    request crosses between the event loop and its thread at each adapter on the way: a
    middleware that is only synchronous, each hook of a middleware in asynchronous mode, each
    `process_view`, the view (six to eight hand-offs for a Twilio webhook). Here the chain is
    built synchronous, as under WSGI, and the request crosses once, into its request thread
    (where its database connection lives), borrowed from `RequestLanes`. An asynchronous view
    would still work: Django adapts it inside the chain.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lanes = RequestLanes()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        lane = self.lanes.take()
        abandoned = [False]
        _abandoned.set(abandoned)  # this task's own context: the request's tasks copy it
        try:
            # A context with an executor: the request's thread-sensitive work (the start
            # signal, the chain and view, the response's close) runs on this lane's thread.
            async with ThreadSensitiveContext(executor=lane):
                await self.handle(scope, receive, send)
        finally:
            self.lanes.give_back(lane, busy=abandoned[0])

    async def get_response_async(self, request: HttpRequest) -> HttpResponse:
        try:
            return await sync_to_async(self.get_response, thread_sensitive=True)(request)
        except asyncio.CancelledError:
            _abandoned.get([False])[0] = True
            raise
