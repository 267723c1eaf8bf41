"""`make help` is what the README points to for "every task": it must list every documented target
(also the ones whose names have digits, such as test-k8s, test-e2e and kind-e2e)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def documented_targets() -> list[str]:
    """Targets with a `## description` in the Makefile (pure: reads the file)."""
    text = (ROOT / "Makefile").read_text()
    return re.findall(r"^([A-Za-z0-9_.-]+):[^\n]*?## ", text, flags=re.MULTILINE)


def test_make_help_lists_every_documented_target():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed (Debian: apt-get install make)")
    result = subprocess.run([make, "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    expected = documented_targets()
    assert {"test-k8s", "test-e2e", "kind-e2e", "demo", "test"} <= set(expected)
    assert listed == expected
