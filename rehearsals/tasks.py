"""Celery entry points for rehearsals. Thin: they call services."""

from __future__ import annotations

from celery import shared_task
from django_scopes import scope

from rehearsals.models import ReplayRun
from rehearsals.replay import replay_lane_run


@shared_task(soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def replay_lane(run_id: str, tenant_id: str) -> int:
    """One lane of a replay run: replays waiting calls one after another."""
    with scope(tenant=tenant_id):
        run = ReplayRun.objects.filter(id=run_id, tenant_id=tenant_id).first()
        if run is None or run.status in ReplayRun.FINAL:
            return 0
        return replay_lane_run(run=run)
