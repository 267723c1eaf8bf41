"""`make demo` (scripts/demo.py) end to end, with a short workload: the real redis-server and model
service start, the table is printed with hits and misses, and everything started is stopped."""
from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from scripts.demo import percentile
from cachedmodel.testing.model_service import MODEL_FILES_HINT, REPO, artifact_missing

pytestmark = pytest.mark.integration


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0 and percentile([], 0.5) == 0.0
    assert percentile(values[:99], 0.5) == 50.0 and percentile(values[:99], 0.99) == 99.0  # ceil(98.01) = 99
    assert percentile([3.0], 0.99) == 3.0 and percentile(values, 1.0) == 100.0


def test_demo_prints_the_table_and_stops_what_it_started():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    result = subprocess.run([sys.executable, "-m", "scripts.demo", "--requests", "120", "--time-limit", "60"],
                            cwd=REPO, capture_output=True, text=True, timeout=180)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    hits = re.search(r"cache hit over HTTP\s+[\d.]+ ms\s+[\d.]+ ms\s+(\d+)", output)
    misses = re.search(r"model \(cache miss\) over HTTP\s+[\d.]+ ms\s+[\d.]+ ms\s+(\d+)", output)
    assert hits and misses, output
    assert int(hits.group(1)) > 0 and int(misses.group(1)) > 0 and int(hits.group(1)) + int(misses.group(1)) == 120
    server = re.search(r"server counters: (\d+) hits, (\d+) misses", output)
    assert server and (server.group(1), server.group(2)) == (hits.group(1), misses.group(1)), output
    memory = re.search(r"Redis memory per entry\s+(\d+) B", output)
    assert memory and 0 < int(memory.group(1)) < 1024, output
    assert "sent 120/120" in output  # progress was shown
    redis_port = int(re.search(r"redis-server\s+127\.0\.0\.1:(\d+)", output).group(1))
    service_port = int(re.search(r"model service\s+http://127\.0\.0\.1:(\d+)", output).group(1))
    assert not listening("127.0.0.1", redis_port) and not listening("127.0.0.1", service_port)
