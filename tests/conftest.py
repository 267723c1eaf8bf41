"""Shared pytest fixtures. Each tier's fixtures live in tests/support/ and are registered here."""
import pytest

from cachedmodel.testing.redis_server import RedisServer

# The local Kubernetes control plane: fixtures `kube_cluster` (session) and `k8s_namespace`.
pytest_plugins = ["tests.support.control_plane"]


@pytest.fixture
def redis_server():
    """A fresh real redis-server on a free loopback port, stopped after the test."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server_factory():
    """Start redis-servers with custom directives (e.g. maxmemory); all are stopped after the test."""
    started: list[RedisServer] = []

    def start(**kwargs) -> RedisServer:
        server = RedisServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
