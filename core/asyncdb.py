"""Database work from the event loop, in a pool of threads.

Channels' `database_sync_to_async` is thread-sensitive: every consumer of a process queues its
database calls on one shared thread, so a thousand live conversations wait on each other. Here
each call runs in a thread of a pool (`ASYNC_DB_THREADS`), takes a connection from the process'
pool, and gives it back when done; the tenant scope and log context travel with it (contextvars).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from django.conf import settings

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.ASYNC_DB_THREADS, thread_name_prefix="db"
        )
    return _executor


def database_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`func` as a coroutine function that runs `func` in the database thread pool."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_pool())


class PooledDatabaseConsumer:
    """A Channels consumer whose database work all goes through `database_async`.

    Channels closes stale database connections before every message a consumer handles, in the
    one thread-sensitive thread that its `database_sync_to_async` uses: a hand-off to that thread
    for each frame of a live call. Here every database call already takes a connection from the
    pool and gives it back in its own thread, so messages are handled without that hand-off.
    """

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
