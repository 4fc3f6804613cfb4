"""/healthz (the process answers) and /readyz (database, cache and broker answer, and this
server process is below its load thresholds: a load balancer stops sending it new calls while
it answers 503).

A readiness probe must answer quickly when a dependency hangs (accepts connections, never
replies), so every check carries its own short timeout instead of the drivers' defaults.
"""

from __future__ import annotations

import logging
import time
import uuid

from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from core import load

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2


def _check_database() -> None:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        # libpq waits for a silent server for as long as TCP allows unless told otherwise; probe
        # with a connection of our own that gives up in time (and closes straight away).
        params = connection.get_connection_params()
        params.setdefault("connect_timeout", CHECK_TIMEOUT_SECONDS)
        with connection.Database.connect(**params) as probe:
            probe.execute("SELECT 1")
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just stored")
    cache.delete(key)


def _check_broker() -> None:
    # Socket timeouts are understood by the Redis transport and ignored by the filesystem one.
    timeouts = {
        "socket_timeout": CHECK_TIMEOUT_SECONDS,
        "socket_connect_timeout": CHECK_TIMEOUT_SECONDS,
    }
    with celery_app.connection_for_write(transport_options=timeouts) as conn:
        conn.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT_SECONDS)


def _check_load() -> None:
    if busy := load.overloaded():
        raise RuntimeError(f"past its load thresholds: {', '.join(busy)}")


CHECKS = {
    "load": _check_load,
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; say which part and why
            logger.warning("readiness check failed", extra={"check": name, "error": str(exc)})
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    results["load"].update(load.process_load.current().as_dict())
    ready = all(r["ok"] for r in results.values())
    failing = [name for name, r in results.items() if not r["ok"]]
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "failing": failing, "checks": results},
        status=200 if ready else 503,
    )
