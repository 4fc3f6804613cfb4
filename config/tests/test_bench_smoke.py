"""The benchmark suite still runs: a tiny relay capacity run (its own daphne, fake Groq, Celery
worker, PostgreSQL and Redis). Only that it works is checked, never how fast."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from devtools.testing import BASE_DIR

SERVER = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
def bench_database():
    """A database of the run's own, dropped afterwards: a benchmark database left migrated by
    other code (another checkout, older migrations) cannot fail this run."""
    name = f"voiceplatform_bench_{uuid.uuid4().hex[:8]}"
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_benchmark_suite_runs_end_to_end(tmp_path, bench_database):
    output = tmp_path / "benchmarks.md"
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["BENCH_DATABASE_URL"] = bench_database
    result = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--quick",
            "--only",
            "capacity",
            "--capacity",
            "3",
            "--idle-sessions",
            "3",
            "--output",
            str(output),
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout
    assert "### 3. Capacity of one server process in relay mode" in report
    [row] = [line for line in report.splitlines() if line.startswith("| 3 |")][:1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert float(cells[1]) > 0  # answers per second
    assert cells[6] == "0"  # errors
    idle = report.split("Held idle:")[1]
    [idle_row] = [line for line in idle.splitlines() if line.startswith("| 3 |")]
    assert [cell.strip() for cell in idle_row.strip("|").split("|")][1:4] == ["3", "3", "0"]
    assert not output.exists()  # a quick run never overwrites the published figures
