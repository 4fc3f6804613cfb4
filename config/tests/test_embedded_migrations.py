"""On embedded defaults `scripts/run` migrates two SQLite databases, the platform's and the
channel layer's, one after the other: data migrations must work on the database being migrated,
whichever was migrated first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_both_embedded_databases_migrate_one_after_the_other(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CHANNELS_DATABASE_PATH": str(tmp_path / "channels.sqlite3"),
        "REDIS_URL": "",
    }
    for alias in ("default", "channels"):
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--database", alias, "-v0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{alias}: {result.stderr[-2000:]}"
    assert (tmp_path / "db.sqlite3").stat().st_size > 0
    assert (tmp_path / "channels.sqlite3").stat().st_size > 0
