"""`make test-unit` is offline for real: scripts/offline.sh runs it in a network namespace that has
loopback and nothing else, so a unit test that reaches for the network fails instead of passing."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "offline.sh"
PROBE = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
         "print(sorted(name for _, name in socket.if_nameindex()))")


def test_offline_script_leaves_only_a_working_loopback():
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("this user may not create network namespaces (not root): offline.sh falls back to the host network")
    result = subprocess.run(["bash", str(SCRIPT), sys.executable, "-c", PROBE],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['lo']"
