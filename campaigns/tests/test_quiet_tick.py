"""A worker with beat at INFO does not log the dialler's tick every few seconds; it logs a tick
that starts something (here: a callback due)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from campaigns.models import ScheduledCallback
from devtools.testing import start_celery_worker, stop_celery_worker, wait_until_ready, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def _worker_log_for(seconds: float, tmp_path, media_root) -> str:
    queue = f"test-tick-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        queue=queue,
        media_root=media_root,
        extra_env={"LOG_LEVEL": "INFO", "CAMPAIGN_TICK_SECONDS": "1"},
    )
    worker = start_celery_worker(
        env=env,
        queue=queue,
        log_path=tmp_path / f"{queue}.log",
        beat_schedule=tmp_path / f"{queue}.beat",
        loglevel="INFO",
    )
    try:
        wait_until_ready(worker)
        time.sleep(seconds)
    finally:
        stop_celery_worker(worker)
    return worker.log()


def test_an_idle_tick_is_not_logged_and_a_busy_one_is(
    tmp_path, media_root, tenant_a, assistant_a, number_a
):
    idle = _worker_log_for(3.5, tmp_path, media_root)
    assert "dial_campaigns[" not in idle and "dial-campaigns" not in idle
    assert "dialler tick" not in idle

    with scopes_disabled():
        ScheduledCallback.objects.create(
            tenant=tenant_a,
            assistant=assistant_a,
            phone_number=number_a,
            number="+15551230000",
            due_at=timezone.now() + timedelta(hours=2),  # not due: the ticks stay idle
        )
    assert "dialler tick" not in _worker_log_for(2.5, tmp_path, media_root)
    with scopes_disabled():
        ScheduledCallback.objects.update(due_at=timezone.now())
    busy = _worker_log_for(3.5, tmp_path, media_root)
    assert "dialler tick: 0 tenant(s) dialling, callbacks due" in busy
    assert "campaigns.tasks.place_callbacks" in busy
