"""The Redis backend: the only module of the library that imports `redis`.

Sync SETs use a thread-safe redis-py client (connection pool). Sync GETs, the hot path of every
cache hit, go straight to redis-py Connection objects (same hiredis parser, same socket options)
kept in a lock-free deque: redis-py's per-command wrapper (pool checkout with a readiness poll,
retry and observability hooks) costs more than the rest of a hit. Async calls use a redis.asyncio
client created lazily per event loop (asyncio connections cannot cross loops). Retries are off and
timeouts short: the decorator's circuit breaker, not redis-py, decides when to try again. Every
redis-py failure is translated into CacheBackendError with a `kind` for metrics.
"""
from __future__ import annotations

import asyncio
import collections
import os
import threading

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachedmodel.options import CacheOptions

# kinds after which the server is unreachable or unusable for us: these open the circuit breaker
BREAKER_KINDS = frozenset({"connection", "timeout", "auth", "other"})


class CacheBackendError(Exception):
    """A Redis call failed; `kind` is one of the metrics' error kinds."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.trips_breaker = kind in BREAKER_KINDS


def classify(error: BaseException) -> str:
    """Map a redis-py (or socket) exception to an error kind."""
    if isinstance(error, (redis.exceptions.TimeoutError, TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(error, (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError,
                          redis.exceptions.NoPermissionError)):
        return "auth"
    if isinstance(error, (redis.exceptions.ConnectionError, OSError)):
        return "connection"
    if isinstance(error, redis.exceptions.OutOfMemoryError) or str(error).startswith("OOM"):
        return "oom"
    if isinstance(error, redis.exceptions.ResponseError):
        return "response"
    return "other"


def _wrap(error: BaseException) -> CacheBackendError:
    return CacheBackendError(classify(error), f"{type(error).__name__}: {error}")


class RedisBackend:
    """get/set of raw bytes under string keys, sync and async, errors as CacheBackendError."""

    def __init__(self, options: CacheOptions):
        self.options = options
        self._client = self._make_client(redis.Redis, Retry(NoBackoff(), 0))
        pool = self._client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._idle: collections.deque = collections.deque()  # append/pop are atomic: no lock needed
        self._pid = os.getpid()
        # loop -> its client. Not a WeakKeyDictionary: the client's streams reference their loop, so
        # entries would never go away; clients of closed loops are dropped when a new loop asks instead.
        self._async_clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}
        self._async_lock = threading.Lock()

    def _make_client(self, client_class, retry):
        options = self.options
        kwargs = dict(socket_timeout=options.socket_timeout, socket_connect_timeout=options.socket_connect_timeout,
                      retry=retry, max_connections=options.max_connections)
        if options.username:
            kwargs["username"] = options.username
        if options.password:
            kwargs["password"] = options.password  # a password inside the URL takes precedence (redis-py)
        if options.url:
            if options.ssl_ca_certs:
                kwargs["ssl_ca_certs"] = options.ssl_ca_certs
            return client_class.from_url(options.url, **kwargs)
        return client_class(host=options.host, port=options.port, db=options.database, **kwargs)

    @property
    def describe(self) -> str:
        """Where Redis is, without credentials, for log messages."""
        if self.options.url:
            kwargs = self._client.connection_pool.connection_kwargs
            if "path" in kwargs:
                return f"unix://{kwargs['path']}"
            return f"{self.options.url.split('://')[0]}://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        return f"redis://{self.options.host}:{self.options.port}/{self.options.database}"

    # ---------------------------------------------------------------- sync
    def get(self, key: bytes | str) -> bytes | None:
        if self._pid != os.getpid():  # forked: never share the parent's sockets (drop, don't close them)
            self._idle, self._pid = collections.deque(), os.getpid()
        idle = self._idle
        try:
            connection = idle.pop()
        except IndexError:
            connection = self._connection_class(**self._connection_kwargs)  # connects on first send
        try:
            connection.send_command("GET", key)
            value = connection.read_response()
        except Exception as error:  # noqa: BLE001 - every failure becomes a counted cache error
            connection.disconnect()
            idle.append(connection)
            kind = classify(error)
            if kind in ("connection", "timeout"):
                self._disconnect_idle()  # a restarted server left every idle socket stale
            raise CacheBackendError(kind, f"{type(error).__name__}: {error}") from error
        idle.append(connection)
        return value

    def _disconnect_idle(self) -> None:
        for connection in list(self._idle):
            connection.disconnect()

    def set(self, key: str, value: bytes, ttl_seconds: float | None) -> None:
        try:
            if ttl_seconds is None:
                self._client.set(key, value)
            elif float(ttl_seconds).is_integer():
                self._client.set(key, value, ex=int(ttl_seconds))
            else:
                self._client.set(key, value, px=max(1, int(ttl_seconds * 1000)))
        except Exception as error:  # noqa: BLE001
            raise _wrap(error) from error

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception as error:  # noqa: BLE001
            raise _wrap(error) from error

    # ---------------------------------------------------------------- async
    def _async_client(self) -> "redis.asyncio.Redis":
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            with self._async_lock:
                client = self._async_clients.get(loop)
                if client is None:
                    for ended in [old for old in self._async_clients if old.is_closed()]:
                        del self._async_clients[ended]  # its loop ended without aclose(): free its sockets
                    client = self._make_client(redis.asyncio.Redis, AsyncRetry(NoBackoff(), 0))
                    self._async_clients[loop] = client
        return client

    async def aget(self, key: str) -> bytes | None:
        try:
            return await self._async_client().get(key)
        except Exception as error:  # noqa: BLE001
            raise _wrap(error) from error

    async def aclose(self) -> None:
        """Close the current loop's async client (call before the loop ends, e.g. in app shutdown)."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        self._disconnect_idle()
        self._client.close()
