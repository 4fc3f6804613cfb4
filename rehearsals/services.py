"""Starting rehearsals: a replay run is created, then its lanes are queued for the workers."""

from __future__ import annotations

from django.db import transaction

from rehearsals.models import ReplayRun
from rehearsals.replay import replay_start
from rehearsals.tasks import replay_lane


def replay_begin(**options) -> ReplayRun:
    """Create a replay run (`replay.replay_start`) and queue its lanes once it is committed."""
    run = replay_start(**options)
    for _ in range(run.concurrency):
        transaction.on_commit(
            lambda: replay_lane.delay(str(run.id), str(run.tenant_id)), robust=True
        )
    return run
