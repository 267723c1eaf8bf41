"""The start script of a mode-sentinel data pod (builders/redis.py SENTINEL_DATA_SCRIPT), run by sh against
real Sentinels: `redis-server --sentinel` on loopback addresses, on port 26379 as in the pods. Only the
script's last step, `exec redis-server <config>`, runs a probe on PATH that prints the config it got, so
the test sees which primary the pod would follow.

The defect this guards: a replaced pod -0 whose first questions reached no Sentinel (they were starting,
or the NetworkPolicy did not yet let the new pod's address through) started at once as an empty primary.
The Sentinels then kept it, no failover happened, and the replicas copied it empty."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from cachedmodel.testing.processes import wait_until
from cachedmodel_operator.builders import redis as redis_builder

pytestmark = pytest.mark.integration

SENTINEL_IPS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")
PASSWORD = "s3cret-pw"
OTHER_PRIMARY = "127.0.0.9"  # what the Sentinels name (nothing listens there: they answer all the same)


class Sentinels:
    """Three real Sentinels monitoring `primary`, each on <ip>:26379."""

    def __init__(self, directory: Path, primary: str):
        self.directory, self.primary, self.processes = directory, primary, []

    def start(self) -> "Sentinels":
        binary = shutil.which("redis-server")
        for ip in SENTINEL_IPS:
            with socket.socket() as probe:  # a clear failure, not a confusing one, if the port is taken
                assert probe.connect_ex((ip, 26379)) != 0, f"something already listens on {ip}:26379"
            home = self.directory / ip
            home.mkdir(parents=True, exist_ok=True)
            config = home / "sentinel.conf"
            config.write_text(f"port 26379\nbind {ip}\nrequirepass {PASSWORD}\n"
                              f"sentinel monitor cm {self.primary} 6379 2\nsentinel auth-pass cm {PASSWORD}\n")
            self.processes.append(subprocess.Popen([binary, str(config), "--sentinel", "--dir", str(home),
                                                    "--daemonize", "no", "--loglevel", "warning"],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: all(self._answers(ip) for ip in SENTINEL_IPS), 15, what="the Sentinels answering")
        return self

    @staticmethod
    def _answers(ip: str) -> bool:
        done = subprocess.run(["redis-cli", "-h", ip, "-p", "26379", "--raw", "sentinel", "get-master-addr-by-name",
                               "cm"], env=dict(os.environ, REDISCLI_AUTH=PASSWORD), capture_output=True, text=True,
                              timeout=5)
        return done.returncode == 0 and done.stdout.split()[:1] != [] and not done.stdout.startswith("ERR")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def sentinels(tmp_path):
    started = []

    def start(primary: str) -> Sentinels:
        started.append(Sentinels(tmp_path / "sentinels", primary).start())
        return started[-1]
    yield start
    for group in started:
        group.stop()


def start_script(tmp_path: Path, me: str, wait_seconds: int = 60) -> tuple[subprocess.Popen, Path]:
    """Run the script as pod `me` (POD_NAME.HEADLESS) would; its output goes to a file the test polls."""
    probe_dir = tmp_path / "bin"
    probe_dir.mkdir(exist_ok=True)
    probe = probe_dir / "redis-server"
    probe.write_text('#!/bin/sh\necho "exec redis-server $*"\ncat "$1"\n')
    probe.chmod(0o755)
    pod, headless = me.rsplit(".", 1)
    env = {"PATH": f"{probe_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path), "REDIS_PASSWORD": PASSWORD,
           "POD_NAME": pod, "HEADLESS": headless, "SENTINEL_HOSTS": " ".join(SENTINEL_IPS), "MASTER_NAME": "cm",
           "FIRST_NODE": me, "START_WAIT_SECONDS": str(wait_seconds)}
    output = tmp_path / "start.log"
    with open(output, "w") as handle:
        process = subprocess.Popen(["sh", "-c", redis_builder.SENTINEL_DATA_SCRIPT], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT)
    return process, output


def finished(process: subprocess.Popen, output: Path, timeout: float) -> str:
    process.wait(timeout=timeout)
    text = output.read_text()
    assert process.returncode == 0, text
    return text


def test_a_pod_that_reaches_no_sentinel_yet_waits_for_their_answer_instead_of_starting_as_an_empty_primary(
        tmp_path, sentinels):
    process, output = start_script(tmp_path, me="10.0.0.1")  # pod -0: FIRST_NODE is itself
    try:
        wait_until(lambda: "no Sentinel answers: waiting" in output.read_text() or process.poll() is not None, 30,
                   what="the script asking the Sentinels")
        assert process.poll() is None, f"started without any Sentinel's answer:\n{output.read_text()}"
        sentinels(OTHER_PRIMARY)  # they come up (or the network lets the pod through) and name the primary
        text = finished(process, output, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert f"starting as replica of {OTHER_PRIMARY}" in text and f"replicaof {OTHER_PRIMARY} 6379" in text, text


def test_a_fresh_deploy_starts_pod_0_as_the_primary_without_waiting(tmp_path, sentinels):
    me = "127.0.0.9"  # the Sentinels monitor it, and know no replica yet
    sentinels(me)
    process, output = start_script(tmp_path, me=me)
    text = finished(process, output, timeout=30)
    assert "starting as the primary" in text and "replicaof" not in text and "waiting" not in text, text
    assert f'requirepass "{PASSWORD}"' in text and f"replica-announce-ip {me}" in text


def test_with_no_sentinel_at_all_the_wait_is_bounded(tmp_path):
    process, output = start_script(tmp_path, me="10.0.0.1", wait_seconds=3)
    text = finished(process, output, timeout=60)
    assert "no Sentinel answers after 3s: starting anyway" in text and "starting as the primary" in text, text


def sentinel_ready(port: int, password: str | None, master: str) -> subprocess.CompletedProcess:
    """The Sentinel pods' readiness probe, run against a Sentinel on 127.0.0.1:`port` (26379 in a pod)."""
    probe = redis_builder.READY_SENTINEL.replace("-p 26379", f"-p {port}")
    assert probe != redis_builder.READY_SENTINEL
    env = dict(os.environ, REDIS_PASSWORD=password or "", MASTER_NAME=master)
    return subprocess.run(["sh", "-c", probe], env=env, capture_output=True, text=True, timeout=30)


def test_a_sentinel_is_ready_only_once_it_knows_a_replica_it_could_promote(tmp_path):
    """Ready must mean "a failover is possible": a Sentinel that knows no replica yet (it learns them
    from the primary's INFO some seconds after it starts) aborts the failover of a lost primary."""
    from cachedmodel.testing.redis_server import RedisServer

    lonely_primary = RedisServer(password=PASSWORD).start()
    home = tmp_path / "lonely-sentinel"
    home.mkdir()
    config = home / "sentinel.conf"
    config.write_text(f"sentinel monitor cm 127.0.0.1 {lonely_primary.port} 1\nsentinel auth-pass cm {PASSWORD}\n"
                      f"requirepass {PASSWORD}\n")
    lonely = RedisServer(password=PASSWORD, data_dir=str(home), sentinel_config=str(config)).start()
    try:
        named = subprocess.run(["redis-cli", "-p", str(lonely.port), "--raw", "sentinel", "get-master-addr-by-name",
                                "cm"], env=dict(os.environ, REDISCLI_AUTH=PASSWORD), capture_output=True, text=True,
                               timeout=10).stdout.split()
        assert named == ["127.0.0.1", str(lonely_primary.port)]  # it names the primary: not enough
        assert sentinel_ready(lonely.port, PASSWORD, "cm").returncode != 0, "ready without any replica to promote"
        assert sentinel_ready(lonely.port, PASSWORD, "no-such-master").returncode != 0
    finally:
        lonely.stop()
        lonely_primary.stop()

    from cachedmodel.testing.redis_topologies import SentinelDeployment
    with SentinelDeployment(replicas=1, password=PASSWORD) as deployment:
        sentinel = deployment.sentinel_nodes[0]
        wait_until(lambda: sentinel_ready(sentinel.port, PASSWORD, deployment.service).returncode == 0, 30,
                   what="the Sentinel ready once it knows the replica")
        deployment.nodes[1].kill()  # the only replica gone (flags s_down): no failover possible, not ready
        wait_until(lambda: sentinel_ready(sentinel.port, PASSWORD, deployment.service).returncode != 0, 30,
                   what="the Sentinel not ready without a healthy replica")
