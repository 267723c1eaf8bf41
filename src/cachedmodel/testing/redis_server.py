"""A real `redis-server` on a free loopback port, for integration tests, benchmarks and the demo.

Started from Debian's binary with no config file and no persistence; stopped (and its data dir
removed) by `stop()`. Readiness is polled with a deadline, never slept for.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from cachedmodel.testing.processes import free_port, wait_until  # noqa: F401 - re-exported for tests


def _ping(port: int, password: str | None) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        if password:
            sock.sendall(f"AUTH {password}\r\n".encode())
            if not sock.recv(64).startswith(b"+OK"):
                return False
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@dataclass
class RedisServer:
    """One redis-server process; `extra_args` are redis.conf directives, e.g. ["--maxmemory", "1mb"]."""

    port: int = field(default_factory=free_port)
    password: str | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    data_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="cachedmodel-redis-"))
    sentinel_config: str | None = None  # a sentinel.conf: run as a Sentinel (`redis-server FILE --sentinel`)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH: run `make setup` (installs Debian's redis-server)")
        if self.sentinel_config:  # Sentinels take only their own directives (no save/appendonly)
            args = [binary, self.sentinel_config, "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", self.data_dir, "--daemonize", "no", "--loglevel", "warning"]
        else:
            args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", self.data_dir, "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args + list(self.extra_args), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(lambda: self.process.poll() is None and _ping(self.port, self.password), timeout,
                   what=f"redis-server on 127.0.0.1:{self.port}")
        return self

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would; the port stays reserved for `start()` again."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, timeout: float = 10.0) -> "RedisServer":
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def redis_available() -> bool:
    return shutil.which("redis-server") is not None or os.path.exists("/usr/bin/redis-server")
