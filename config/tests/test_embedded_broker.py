"""The embedded filesystem broker (no REDIS_URL): tasks are published without kombu warnings."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PUBLISH = """
import django
django.setup()
from config.celery import app
queue = {queue!r}
app.send_task("celery.accumulate", args=("x",), queue=queue)
with app.connection_for_write() as connection:
    print("published", connection.default_channel.queue_purge(queue))
"""


def test_a_task_is_published_to_the_embedded_broker_without_a_hostname_warning(tmp_path):
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CHANNELS_DATABASE_PATH": str(tmp_path / "channels.sqlite3"),
    }
    queue = f"test-{uuid.uuid4().hex[:12]}"
    result = subprocess.run(
        [sys.executable, "-c", PUBLISH.format(queue=queue)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "published 1"
    assert "No hostname was supplied" not in result.stderr + result.stdout
    assert "WARNING" not in result.stderr, result.stderr
