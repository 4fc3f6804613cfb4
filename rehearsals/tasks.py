"""Celery entry points for rehearsals. Thin: they call services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django_scopes import scope

from rehearsals.models import ReplayRun
from rehearsals.replay import replay_lane_run, replays_revive


@shared_task(soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def replay_lane(run_id: str, tenant_id: str) -> int:
    """One lane of a replay run: replays waiting calls one after another."""
    with scope(tenant=tenant_id):
        run = ReplayRun.objects.filter(id=run_id, tenant_id=tenant_id).first()
        if run is None or run.status in ReplayRun.FINAL:
            return 0
        return replay_lane_run(run=run)


@shared_task
def revive_replays() -> int:
    """Give back to a new lane the calls of lanes lost with their worker (killed, restarted)."""
    runs = replays_revive(quiet_for=timedelta(seconds=settings.REPLAY_LOST_LANE_SECONDS))
    for run in runs:
        replay_lane.delay(str(run.id), str(run.tenant_id))
    return len(runs)
