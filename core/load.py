"""How loaded this server process is, and whether it takes new calls.

A process past its capacity does every call harm: the event loop runs late for all of them, so
callers already talking wait seconds for answers and new handshakes time out unanswered. It is
better to refuse the next caller politely. Three signs are read, each with its own threshold
(0: not checked):

- event-loop lag (`LOAD_MAX_LOOP_LAG_MS`): how late a small sampling task wakes up, held for a
  few samples after a spike so that one quiet moment does not open the doors again;
- sessions held (`LOAD_MAX_SESSIONS`): the call sockets (relay, stream, browser talk) open in
  this process;
- database pool wait (`LOAD_MAX_DB_WAIT_MS`): the mean wait for a pooled connection since the
  last sample.

The sampler also keeps this process' heartbeat in the shared cache: a process that stops (killed,
crashed) stops beating, and the calls it held are closed by a sweeper (`calls.tasks`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from prometheus_client import Counter, Gauge

from core import caching

logger = logging.getLogger(__name__)

# A lag spike fades by this factor per sample, so the process stays "busy" for a moment after it.
LAG_DECAY = 0.7

LOOP_LAG = Gauge(
    "voice_process_loop_lag_ms",
    "How late this server process' event loop runs (recent peak, milliseconds).",
    multiprocess_mode="liveall",
)
SESSIONS = Gauge(
    "voice_process_sessions",
    "Call sockets (relay, stream, browser talk) held by this server process.",
    multiprocess_mode="liveall",
)
DB_WAIT = Gauge(
    "voice_process_db_pool_wait_ms",
    "Mean wait for a pooled database connection in the last sample (milliseconds).",
    multiprocess_mode="liveall",
)
OVERLOADED = Gauge(
    "voice_process_overloaded",
    "1 while this server process refuses new calls.",
    multiprocess_mode="liveall",
)
REFUSED = Counter(
    "voice_calls_refused_overloaded_total",
    "New calls refused because the server process was past its load thresholds.",
    ["mode"],
)


@dataclass(frozen=True)
class Load:
    """One reading of the process' load."""

    loop_lag_ms: float
    sessions: int
    db_wait_ms: float

    def past_thresholds(self) -> list[str]:
        """The signs past their configured threshold (empty: the process takes new calls)."""
        limits = (
            ("loop_lag", self.loop_lag_ms, settings.LOAD_MAX_LOOP_LAG_MS),
            ("sessions", self.sessions, settings.LOAD_MAX_SESSIONS),
            ("db_pool_wait", self.db_wait_ms, settings.LOAD_MAX_DB_WAIT_MS),
        )
        return [name for name, value, limit in limits if limit and value >= limit]

    def as_dict(self) -> dict:
        return {
            "loop_lag_ms": round(self.loop_lag_ms, 1),
            "sessions": self.sessions,
            "db_pool_wait_ms": round(self.db_wait_ms, 1),
        }


class ProcessLoad:
    """The load of this process: written by the sampler and the sockets, read by admission."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions = 0
        self._loop_lag_ms = 0.0
        self._db_wait_ms = 0.0
        self._pool_stats: tuple[int, int] | None = None
        self._sampler: asyncio.Task | None = None
        self._beat_at = 0.0
        self._beating: asyncio.Future | None = None

    def current(self) -> Load:
        return Load(self._loop_lag_ms, self._sessions, self._db_wait_ms)

    def session_opened(self) -> None:
        with self._lock:
            self._sessions += 1
            SESSIONS.set(self._sessions)

    def session_closed(self) -> None:
        with self._lock:
            self._sessions = max(self._sessions - 1, 0)
            SESSIONS.set(self._sessions)

    @contextmanager
    def session_held(self) -> Iterator[None]:
        self.session_opened()
        try:
            yield
        finally:
            self.session_closed()

    def start_sampling(self) -> None:
        """Start the sampler on the running event loop (once per loop; cheap to call often)."""
        loop = asyncio.get_running_loop()
        sampler = self._sampler
        if sampler is not None and not sampler.done() and sampler.get_loop() is loop:
            return
        if sampler is not None and not sampler.get_loop().is_closed():
            # A loop that is over but not closed (tests run one per case): stop its sampler.
            sampler.get_loop().call_soon_threadsafe(sampler.cancel)
        self._sampler = loop.create_task(self._sample_forever())

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            interval = settings.LOAD_SAMPLE_SECONDS
            started = loop.time()
            await asyncio.sleep(interval)
            lag_ms = max(loop.time() - started - interval, 0.0) * 1000
            try:
                self.sample(lag_ms)
                self._beat_soon(loop)
            except Exception:  # the sampler outlives any one failed reading
                logger.warning("load: could not take a sample", exc_info=True)

    def _beat_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send the heartbeat in a thread, never waiting for it (a hung Redis must not stop the
        sampling), and only one at a time."""
        due = time.monotonic() - self._beat_at >= settings.SERVER_HEARTBEAT_SECONDS
        if not due or (self._beating is not None and not self._beating.done()):
            return
        self._beat_at = time.monotonic()
        self._beating = loop.run_in_executor(None, heartbeat)
        self._beating.add_done_callback(_heartbeat_done)

    def sample(self, lag_ms: float) -> Load:
        """Take one reading: the loop's lateness just measured, and the pool's wait."""
        self._loop_lag_ms = max(lag_ms, self._loop_lag_ms * LAG_DECAY)
        self._db_wait_ms = self._read_pool_wait()
        load = self.current()
        LOOP_LAG.set(load.loop_lag_ms)
        DB_WAIT.set(load.db_wait_ms)
        OVERLOADED.set(1 if load.past_thresholds() else 0)
        return load

    def _read_pool_wait(self) -> float:
        """Mean wait for a pooled connection since the last reading (0 without a pool)."""
        pools = getattr(type(connections["default"]), "_connection_pools", {})
        pool = pools.get("default")
        if pool is None:
            return 0.0
        stats = pool.get_stats()
        now = (stats.get("requests_num", 0), stats.get("requests_wait_ms", 0))
        before, self._pool_stats = self._pool_stats, now
        if before is None or now[0] <= before[0]:
            return 0.0
        return (now[1] - before[1]) / (now[0] - before[0])


process_load = ProcessLoad()


class LoadSampled:
    """ASGI middleware: the process' load is sampled from its first request on."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        process_load.start_sampling()
        return await self.app(scope, receive, send)


def overloaded() -> list[str]:
    """Why this process should refuse a new call now (empty: it takes it)."""
    reasons = process_load.current().past_thresholds()
    OVERLOADED.set(1 if reasons else 0)
    return reasons


def refusal_counted(mode: str) -> None:
    REFUSED.labels(mode=mode).inc()


# Heartbeats: which server processes are alive, in the shared cache.

_SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def server_id() -> str:
    """This process' name among the servers (host, pid and a random part: pids are reused)."""
    return _SERVER_ID


def _heartbeat_key(server: str) -> str:
    return f"server:alive:{server}"


def heartbeat() -> None:
    """Say that this process is alive, for SERVER_HEARTBEAT_TTL seconds."""
    caching.shared_cache().set(
        _heartbeat_key(_SERVER_ID), time.time(), timeout=settings.SERVER_HEARTBEAT_TTL
    )


def _heartbeat_done(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("load: could not send the heartbeat", exc_info=future.exception())


def heartbeats_shared() -> bool:
    """Whether heartbeats reach other processes (a Redis cache; not a per-process one)."""
    return caching.redis_client() is not None


def servers_alive(servers: list[str]) -> set[str]:
    """Those of `servers` whose heartbeat has not run out."""
    keys = {_heartbeat_key(server): server for server in servers}
    found = caching.shared_cache().get_many(list(keys))
    return {keys[key] for key in found}
