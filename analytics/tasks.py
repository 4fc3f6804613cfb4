"""Celery entry points of the analytics app. Thin: they call services."""

from __future__ import annotations

from celery import shared_task

from analytics.services import hourly_stats_refresh

# A normal run redoes a few hours; while older history is backfilled, a day per run.
ROLLUP_SOFT_TIME_LIMIT = 300


@shared_task(soft_time_limit=ROLLUP_SOFT_TIME_LIMIT, time_limit=ROLLUP_SOFT_TIME_LIMIT + 60)
def refresh_rollups() -> dict:
    """Bring the dashboard's rollups up to date (beat, every ANALYTICS_ROLLUP_SECONDS).

    Crosses tenants on purpose (the rollups are per tenant, computed for all of them at once);
    returns what it did.
    """
    run = hourly_stats_refresh()
    return {
        "hours": run.hours,
        "rows": run.rows,
        "covered_from": run.covered_from.isoformat() if run.covered_from else None,
        "covered_until": run.covered_until.isoformat() if run.covered_until else None,
    }
