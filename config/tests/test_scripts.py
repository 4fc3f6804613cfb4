"""scripts/test says exactly what to install when a system program the suite needs is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")


def path_without(tmp_path: Path, *names: str) -> str:
    """A PATH with every program of this machine but `names` (symlinks in one directory)."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in SYSTEM_DIRS:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = farm / entry.name
            if entry.name not in names and not target.exists() and not target.is_symlink():
                target.symlink_to(entry.path)
    return str(farm)


def run_tests_script(path: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        ["bash", "scripts/test", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "missing",
    [("chromium",), ("espeak-ng",), ("chromium", "espeak-ng")],
    ids=lambda names: "+".join(names),
)
def test_it_names_the_missing_system_programs_and_how_to_install_them(tmp_path, missing):
    result = run_tests_script(path_without(tmp_path, *missing), "--version")

    assert result.returncode != 0
    assert f"apt-get install -y {' '.join(missing)}" in result.stderr, result.stderr
    assert "pytest" not in result.stdout + result.stderr.replace("scripts/test", "")


def test_with_everything_installed_it_runs_pytest(tmp_path):
    result = run_tests_script(os.environ["PATH"], "--version")

    assert result.returncode == 0, result.stderr
    assert "pytest" in result.stdout + result.stderr
