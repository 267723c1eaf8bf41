"""Real Redis Sentinel and Redis Cluster deployments on loopback, for integration tests and benchmarks.

`SentinelDeployment`: a primary, replicas (`replicaof`) and three Sentinels (`redis-server --sentinel`)
monitoring it with a short down-after, so a killed primary is replaced in a few seconds.
`ClusterDeployment`: `shards` primaries x `replicas_per_shard` replicas made with
`redis-cli --cluster create`, with a short cluster-node-timeout; `reshard` moves slots with
`redis-cli --cluster reshard` while clients keep running.

Every query goes through redis-cli (only cachedmodel.backend imports redis). Every wait polls
with a deadline. `stop()` ends every process it started and removes their directories.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field

from cachedmodel.testing.processes import free_port, wait_until
from cachedmodel.testing.redis_server import RedisServer

SERVICE = "cachedmodel"
# replicas sync at once (Redis 7 waits 5 s for more replicas before a diskless full sync by default)
_REPLICATION_ARGS = ["--repl-diskless-sync-delay", "0"]


def redis_cli(port: int, *args: str, password: str | None = None, timeout: float = 10.0) -> str:
    """Run one redis-cli command against 127.0.0.1:port; its stdout (raises on a non-zero exit)."""
    env = dict(os.environ, REDISCLI_AUTH=password) if password else None
    done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=True)
    return done.stdout


def _info(port, section: str, password: str | None = None) -> dict[str, str]:
    port = port.port if isinstance(port, RedisServer) else port
    lines = redis_cli(port, "INFO", section, password=password, timeout=3).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


@dataclass
class SentinelDeployment:
    """One monitored primary with `replicas` replicas and `sentinels` Sentinels, all on 127.0.0.1."""

    replicas: int = 1
    sentinels: int = 3
    password: str | None = None
    down_after_ms: int = 1000
    service: str = SERVICE
    nodes: list[RedisServer] = field(default_factory=list)
    sentinel_nodes: list[RedisServer] = field(default_factory=list)
    _dirs: list[str] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.sentinel_nodes]

    def _auth_args(self) -> list[str]:
        return _REPLICATION_ARGS + (["--masterauth", self.password] if self.password else [])

    def start(self, timeout: float = 30.0) -> "SentinelDeployment":
        primary = RedisServer(password=self.password, extra_args=self._auth_args()).start()
        self.nodes.append(primary)
        for _ in range(self.replicas):
            self.nodes.append(RedisServer(password=self.password, extra_args=[
                *self._auth_args(), "--replicaof", "127.0.0.1", str(primary.port)]).start())
        wait_until(lambda: all(_info(node.port, "replication", self.password).get("master_link_status") == "up"
                               for node in self.nodes[1:]), timeout, what="replicas in sync with the primary")
        for _ in range(self.sentinels):
            self.sentinel_nodes.append(self._start_sentinel(primary.port))
        wait_until(lambda: all(self.primary_port_seen_by(node) == primary.port
                               and self._sentinel_peers(node) == self.sentinels - 1 for node in self.sentinel_nodes),
                   timeout, what="every Sentinel monitoring the primary and seeing the others")
        return self

    def _start_sentinel(self, primary_port: int) -> RedisServer:
        directory = tempfile.mkdtemp(prefix="cachedmodel-sentinel-")
        self._dirs.append(directory)
        lines = [f"sentinel monitor {self.service} 127.0.0.1 {primary_port} 2",
                 f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                 f"sentinel failover-timeout {self.service} {max(3000, 3 * self.down_after_ms)}",
                 f"sentinel parallel-syncs {self.service} 1"]
        if self.password:
            lines += [f"sentinel auth-pass {self.service} {self.password}", f"requirepass {self.password}"]
        config = os.path.join(directory, "sentinel.conf")
        with open(config, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return RedisServer(password=self.password, data_dir=directory, sentinel_config=config).start()

    def primary_port_seen_by(self, sentinel: RedisServer) -> int | None:
        reply = redis_cli(sentinel.port, "SENTINEL", "get-master-addr-by-name", self.service,
                          password=self.password, timeout=3).split()
        return int(reply[1]) if len(reply) == 2 else None

    def _sentinel_peers(self, sentinel: RedisServer) -> int:
        lines = redis_cli(sentinel.port, "SENTINEL", "master", self.service, password=self.password,
                          timeout=3).splitlines()
        return int(lines[lines.index("num-other-sentinels") + 1])

    def primary(self) -> RedisServer:
        """The node the Sentinels currently name as primary."""
        for sentinel in self.sentinel_nodes:
            try:
                port = self.primary_port_seen_by(sentinel)
            except (subprocess.SubprocessError, OSError):
                continue
            for node in self.nodes:
                if node.port == port:
                    return node
        raise RuntimeError("no Sentinel names a primary")

    def wait_for_new_primary(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Poll until the Sentinels promoted a replica in place of `old`, and it accepts writes."""
        def promoted():
            node = self.primary()
            return node if node is not old and _info(node.port, "replication", self.password)["role"] == "master" \
                else None
        return wait_until(promoted, timeout, interval=0.1, what="a replica promoted by the Sentinels")

    def stop(self) -> None:
        for node in self.sentinel_nodes + self.nodes:
            node.stop()
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> "SentinelDeployment":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class ClusterDeployment:
    """A Redis Cluster of `shards` primaries with `replicas_per_shard` replicas each, on 127.0.0.1."""

    shards: int = 3
    replicas_per_shard: int = 1
    password: str | None = None
    node_timeout_ms: int = 1000
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    def start(self, timeout: float = 60.0) -> "ClusterDeployment":
        for _ in range(self.shards * (1 + self.replicas_per_shard)):
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(self.node_timeout_ms), *_REPLICATION_ARGS]
            if self.password:
                extra += ["--masterauth", self.password]
            self.nodes.append(RedisServer(port=free_cluster_port(), password=self.password, extra_args=extra).start())
        redis_cli(self.nodes[0].port, "--cluster", "create", *self.addresses, "--cluster-replicas",
                  str(self.replicas_per_shard), "--cluster-yes", password=self.password, timeout=timeout)
        self.wait_healthy(timeout)
        self.wait_replicas_in_sync(timeout)
        return self

    def wait_replicas_in_sync(self, timeout: float = 30.0) -> None:
        """A replica can only be promoted once it has synced (else its data age is unbounded)."""
        def in_sync():
            ports = [row["port"] for row in self.node_table() if "slave" in row["flags"] and "fail" not in row["flags"]]
            return len(ports) >= self.shards * self.replicas_per_shard and all(
                _info(port, "replication", self.password).get("master_link_status") == "up" for port in ports)
        wait_until(in_sync, timeout, interval=0.1, what="every cluster replica in sync with its primary")

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        lines = redis_cli(node.port, "CLUSTER", "INFO", password=self.password, timeout=3).splitlines()
        return dict(line.strip().split(":", 1) for line in lines if ":" in line)

    def live_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process and node.process.poll() is None]

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Poll until every live node says cluster_state:ok with all 16384 slots assigned and served."""
        def healthy():
            return all(info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384"
                       for info in map(self.cluster_info, self.live_nodes()))
        wait_until(healthy, timeout, interval=0.1, what="Redis Cluster state ok on every node")

    def node_table(self, via: RedisServer | None = None) -> list[dict]:
        """CLUSTER NODES as dicts: id, port, flags (set), primary id, slots (list of 'a-b' ranges)."""
        via = via or self.live_nodes()[0]
        rows = []
        for line in redis_cli(via.port, "CLUSTER", "NODES", password=self.password, timeout=3).splitlines():
            parts = line.split()
            address = parts[1].split("@")[0]
            rows.append({"id": parts[0], "port": int(address.rsplit(":", 1)[1]) if ":" in address else None,
                         "flags": set(parts[2].split(",")), "primary": parts[3], "slots": parts[8:]})
        return rows

    def primaries(self) -> list[RedisServer]:
        ports = {row["port"] for row in self.node_table() if "master" in row["flags"] and "fail" not in row["flags"]
                 and row["slots"]}
        return [node for node in self.live_nodes() if node.port in ports]

    def node_id(self, node: RedisServer) -> str:
        return redis_cli(node.port, "CLUSTER", "MYID", password=self.password, timeout=3).strip()

    def wait_for_failover(self, dead: RedisServer, timeout: float = 30.0) -> None:
        """Poll until `dead`'s slots are served by a promoted replica and the cluster is ok again."""
        def replaced():
            rows = self.node_table()
            gone = [row for row in rows if row["port"] == dead.port]
            return (not gone or "fail" in gone[0]["flags"] or not gone[0]["slots"]) and all(
                self.cluster_info(node).get("cluster_state") == "ok" for node in self.live_nodes())
        wait_until(replaced, timeout, interval=0.1, what="a replica promoted in place of the killed primary")

    def reshard(self, source: RedisServer, target: RedisServer, slots: int, timeout: float = 120.0) -> None:
        """Move `slots` slots (and their keys) from `source` to `target` with redis-cli, as an operator would."""
        redis_cli(source.port, "--cluster", "reshard", f"127.0.0.1:{source.port}",
                  "--cluster-from", self.node_id(source), "--cluster-to", self.node_id(target),
                  "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "10",
                  password=self.password, timeout=timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "ClusterDeployment":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def free_cluster_port() -> int:
    """A free loopback port whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) on 127.0.0.1")
