"""One cache client per process, for the per-turn paths.

`django.core.cache.caches` keeps a client per thread and per asyncio context. Database work from
the event loop runs in a fresh context each time (`core.asyncdb`), so every rate-limit check or
answer-cache look-up would build a new client: a Redis client object with its helpers, CPU spent
on every turn and garbage the collector must sweep while calls wait. The backends used here
(django-redis over redis-py's thread-safe connection pool, and locmem) are safe to share.
"""

from __future__ import annotations

import functools

from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver


@functools.cache
def shared_cache() -> BaseCache:
    """The default cache, one instance for the whole process."""
    return caches.create_connection("default")


def redis_client():
    """The Redis client behind the default cache (None when the cache is not Redis)."""
    client = getattr(shared_cache(), "client", None)
    return client.get_client(write=True) if client is not None else None


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting in ("CACHES", "REDIS_URL"):
        shared_cache.cache_clear()
