"""The layout's rule: imports run one way, ground floor first, with no cycles (README, "Layout").

The contracts are in pyproject.toml ([tool.importlinter]); this runs them, so that a new import
against the direction, or a new cycle, fails the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_run_one_way_and_without_cycles():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
