"""The README's "Use it" snippets run as written against a real redis-server: the Python snippet (a miss, then a
hit without calling the model), and the service config with `python -m cachedmodel.service` and the curl
request (x-cache: miss, then hit). Only the Redis address and the port are changed, through the environment."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from cachedmodel.testing.processes import free_port, wait_until

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {title}")
    return text[start:text.index("\n### ", start + 1)]


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def python_snippet() -> str:
    (snippet,) = fenced(section("In Python: the decorator"), "python")
    return snippet


def test_the_python_snippet_misses_then_hits(redis_server, tmp_path):
    snippet = python_snippet()
    assert 'url="redis://localhost:6379/0"' in snippet
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace("redis://localhost:6379/0", redis_server.url), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["model called", "y=42.0", "y=42.0", "None"], result.stdout
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", lines[4])
    assert lines[4] in README.read_text(encoding="utf-8")  # the key the README shows is the real one
    assert redis.Redis.from_url(redis_server.url).ttl(lines[4]) > 3500  # ttl_seconds=3600


def test_the_service_config_serves_the_model_with_the_cache(redis_server, tmp_path):
    text = section("As a service: rest-model-service")
    (config,) = fenced(text, "yaml")
    (commands,) = fenced(text, "bash")
    assert config.startswith("# rest_config.yaml\n")
    assert "REST_CONFIG=rest_config.yaml python -m cachedmodel.service" in commands
    # "the snippet above without its last five lines"
    module = "\n".join(python_snippet().rstrip("\n").splitlines()[:-5]) + "\n"
    (tmp_path / "doubler.py").write_text(module, encoding="utf-8")
    (tmp_path / "rest_config.yaml").write_text(config, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "REST_CONFIG": "rest_config.yaml", "REDIS_URL": redis_server.url, "PORT": str(port),
           "HOST": "127.0.0.1"}
    env.pop("PYTHONPATH", None)
    log = tmp_path / "service.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cachedmodel.service"], cwd=tmp_path, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base}/api/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 60, what="the README's model service")
        curl = re.search(r"curl -s -i -X POST localhost:8000(\S+) .*-d '([^']*)'", commands)
        answers = [httpx.post(base + curl.group(1), content=curl.group(2),
                              headers={"content-type": "application/json"}, timeout=10) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.headers.get("x-cache") for a in answers] == ["miss", "hit"]
        assert [a.text for a in answers] == ['{"y":42.0}'] * 2
        assert '{"y":42.0}' in commands and "x-cache: miss" in commands
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
