"""The dialled numbers, kept per process while no number, tenant, assistant or version changed.

Every voice webhook reads the number the caller dialled with its tenant, its assistant and the
versions its calls run on: a five-table read, about a third of the webhook's own work, for rows
that change rarely. Each process keeps what it read, keyed by the number, under a token shared
in Redis (the directory's generation). A change to one of those rows replaces the token, at once
and again when its transaction commits (so no process keeps a row read before the commit), and
every process then reads its numbers afresh. An app registers its models with
`invalidate_on_change(Model)`; writes that skip Django's signals (`QuerySet.update`) call
`changed()` themselves.

Each webhook gets its own copy of the rows (they are ORM objects it may change). A copy is kept
at most NUMBER_CACHE_SECONDS, whatever happens to Redis; without Redis (embedded mode, or while
it does not answer) every webhook reads the database.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save

from core import caching

logger = logging.getLogger(__name__)

T = TypeVar("T")

KEY = "directory:generation"
MAX_ENTRIES = 2_000  # numbers kept per process (a few KB each); past it, all are read again

_lock = threading.Lock()
_generation: bytes | None = None
_entries: dict[str, tuple[float, bytes]] = {}  # number -> (read at, the pickled rows)
_redis_failed_at = float("-inf")


def number(dialled: str, load: Callable[[], T | None]) -> T | None:
    """The rows of the `dialled` number (normalised): this process' copy while the directory is
    unchanged, else `load()` (kept for the next webhook when it found the number)."""
    global _generation
    seconds = settings.NUMBER_CACHE_SECONDS
    generation = _current() if seconds > 0 else None
    if generation is None:
        return load()
    now = time.monotonic()
    with _lock:
        if generation != _generation:
            _entries.clear()
            _generation = generation
        entry = _entries.get(dialled)
    if entry is not None and now - entry[0] < seconds:
        return pickle.loads(entry[1])
    found = load()
    if found is not None:
        kept = pickle.dumps(found, protocol=pickle.HIGHEST_PROTOCOL)
        with _lock:
            if _generation == generation:
                if len(_entries) >= MAX_ENTRIES:
                    _entries.clear()
                _entries[dialled] = (now, kept)
    return found


def changed() -> None:
    """A number, tenant, assistant or version changed: every process reads its numbers again."""
    _renew()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_renew, robust=True)


def forget() -> None:
    """Drop this process' copies (the next webhook reads the database)."""
    global _generation
    with _lock:
        _entries.clear()
        _generation = None


def _renew() -> None:
    forget()
    client = _client()
    if client is None:
        return
    try:
        client.set(KEY, uuid.uuid4().hex)
    except Exception:
        _failed()


def _current() -> bytes | None:
    """The directory's generation; None without Redis."""
    client = _client()
    if client is None:
        return None
    try:
        generation = client.get(KEY)
        if generation is None:  # never set, or Redis restarted: a new one
            client.set(KEY, uuid.uuid4().hex, nx=True)
            generation = client.get(KEY)
        return generation
    except Exception:
        _failed()
        return None


def _client():
    if not settings.REDIS_URL:
        return None
    if time.monotonic() - _redis_failed_at < settings.REDIS_RETRY_SECONDS:
        return None
    return caching.redis_client()


def _failed() -> None:
    global _redis_failed_at
    _redis_failed_at = time.monotonic()
    forget()  # what was kept may have changed while Redis could not say so
    logger.warning("number directory: redis unavailable, reading numbers afresh", exc_info=True)


def _changed(sender: type, raw: bool = False, **kwargs: object) -> None:
    if not raw:  # fixtures being loaded
        changed()


def invalidate_on_change(model: type[models.Model]) -> None:
    """Saving or deleting a `model` row changes the directory."""
    uid = f"tenants.directory.{model._meta.label_lower}"
    post_save.connect(_changed, sender=model, dispatch_uid=uid + ".save")
    post_delete.connect(_changed, sender=model, dispatch_uid=uid + ".delete")
