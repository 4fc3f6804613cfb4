"""Celery entry points for calls. Thin: they call services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from calls.services import calls_close_orphaned, calls_close_stale
from tenants.ratelimits import STALE_CALL_SECONDS


@shared_task
def close_stale_calls() -> int:
    """Close calls that have shown no sign of life for as long as a line is held for them."""
    return calls_close_stale(quiet_for=timedelta(seconds=STALE_CALL_SECONDS))


@shared_task
def close_orphaned_calls() -> int:
    """Close the live calls of server processes that stopped beating (killed mid-call)."""
    return calls_close_orphaned()
