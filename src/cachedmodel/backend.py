"""The Redis backend: the only module of the library that imports `redis`.

Sync calls (GET, the hot path of every cache hit, SET and PING) go straight to redis-py Connection
objects (same hiredis parser, same socket options) kept in a lock-free deque: redis-py's per-command
wrapper (pool checkout with a readiness poll, retry and observability hooks) costs more than the rest
of a hit. The deque is only a fast lane in front of a redis-py BlockingConnectionPool, which creates
every connection, so at most `max_connections` exist; when all are busy a caller waits up to
`pool_timeout` in that pool and then gets PoolExhaustedError (kind "pool_exhausted": a bypass, never a
circuit-breaker failure, since Redis was not even asked). Async calls (the service's fast path) do the
same per event loop (asyncio connections cannot cross loops): a deque of redis.asyncio connections in
front of that loop's own bounded, blocking pool; the full redis.asyncio client costs ~25 us more a GET.

Timeouts are short and never retried: the decorator's circuit breaker decides when to try again. The
one retry is for a connection error on a socket that was already open (Redis restarted and closed it):
the call is repeated once on a fresh connection, so a restart is not counted as a failure.
Every redis-py failure is translated into CacheBackendError with a `kind` for metrics, and no message
carries a credential.
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

from cachedmodel.options import CacheOptions, ConfigurationError, scrub, secrets_of

# kinds after which the server is unreachable or unusable for us: these open the circuit breaker
BREAKER_KINDS = frozenset({"connection", "timeout", "auth", "other"})
# kinds where Redis was not asked at all: neither a failure nor a success for the circuit breaker
BYPASS_KINDS = frozenset({"pool_exhausted"})

_NO_CONNECTION = "No connection available."  # what redis-py's BlockingConnectionPools raise on timeout


class CacheBackendError(Exception):
    """A Redis call failed or was skipped; `kind` is one of the metrics' error kinds or bypass reasons."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.trips_breaker = kind in BREAKER_KINDS
        self.bypass = kind in BYPASS_KINDS


class PoolExhaustedError(redis.exceptions.MaxConnectionsError):
    """Every pooled connection stayed busy for pool_timeout. redis-py's blocking pools raise a plain
    ConnectionError instead, which would read as a dead Redis and open the circuit."""


class _BlockingPool(redis.BlockingConnectionPool):
    def get_connection(self, *args, **kwargs):
        try:
            return super().get_connection(*args, **kwargs)
        except redis.exceptions.ConnectionError as error:
            if str(error) == _NO_CONNECTION:
                raise PoolExhaustedError(f"all {self.max_connections} connections busy for {self.timeout}s") from None
            raise


class _AsyncBlockingPool(redis.asyncio.BlockingConnectionPool):
    async def get_connection(self, *args, **kwargs):
        try:
            return await super().get_connection(*args, **kwargs)
        except redis.exceptions.ConnectionError as error:
            if str(error) == _NO_CONNECTION:
                raise PoolExhaustedError(f"all {self.max_connections} connections busy for {self.timeout}s") from None
            raise


def classify(error: BaseException) -> str:
    """Map a redis-py (or socket) exception to an error kind."""
    if isinstance(error, redis.exceptions.MaxConnectionsError):
        return "pool_exhausted"
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


class RedisBackend:
    """get/set of raw bytes under string keys, sync and async, errors as CacheBackendError."""

    def __init__(self, options: CacheOptions):
        self.options = options
        self._secrets = secrets_of(options.url, options.password)
        self._pool = self._make_pool(_BlockingPool, Retry(NoBackoff(), 0))
        self._idle: collections.deque = collections.deque()  # append/pop are atomic: no lock needed
        self._busy: set = set()  # checked-out connections (set.add/discard are atomic too)
        self._waiting = 0  # callers waiting in the pool for a connection (changed under _waiting_lock)
        self._waiting_lock = threading.Lock()
        self._pid = os.getpid()
        # loop -> its lane. Not a WeakKeyDictionary: the connections' streams reference their loop, so
        # entries would never go away; clients of closed loops are dropped when a new loop asks instead.
        self._async_lanes: dict[asyncio.AbstractEventLoop, _AsyncLane] = {}
        self._async_lock = threading.Lock()

    def _make_pool(self, pool_class, retry):
        options = self.options
        kwargs = dict(socket_timeout=options.socket_timeout, socket_connect_timeout=options.socket_connect_timeout,
                      retry=retry, max_connections=options.max_connections, timeout=options.pool_timeout)
        if options.username:
            kwargs["username"] = options.username
        if options.password:
            kwargs["password"] = options.password  # a password inside the URL takes precedence (redis-py)
        try:
            if options.url:
                if options.ssl_ca_certs:
                    kwargs["ssl_ca_certs"] = options.ssl_ca_certs
                return pool_class.from_url(options.url, **kwargs)
            return pool_class(host=options.host, port=options.port, db=options.database, **kwargs)
        except (TypeError, ValueError) as error:  # e.g. a bad ?argument in the URL
            raise ConfigurationError(scrub(f"option 'url': {error}", self._secrets)) from None

    @property
    def describe(self) -> str:
        """Where Redis is, without credentials, for log messages."""
        if self.options.url:
            kwargs = self._pool.connection_kwargs
            if "path" in kwargs:
                return f"unix://{kwargs['path']}"
            return f"{self.options.url.split('://')[0]}://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        return f"redis://{self.options.host}:{self.options.port}/{self.options.database}"

    @property
    def in_use(self) -> int:
        """Sync connections checked out by a call right now (at most max_connections)."""
        return len(self._busy)

    def _wrap(self, error: BaseException) -> CacheBackendError:
        return CacheBackendError(classify(error), scrub(f"{type(error).__name__}: {error}", self._secrets))

    # ---------------------------------------------------------------- sync
    def _checkout(self):
        if self._pid != os.getpid():  # forked: never share the parent's sockets (drop, don't close them)
            self._idle, self._busy, self._pid = collections.deque(), set(), os.getpid()
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._checkout_slow()
        self._busy.add(connection)
        return connection

    def _checkout_slow(self):
        """No idle connection: make one, or wait pool_timeout for one (the pool bounds their number)."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            try:
                return self._idle.pop()  # checked in while we registered as waiting
            except IndexError:
                return self._pool.get_connection()
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def _checkin(self, connection) -> None:
        self._busy.discard(connection)
        self._idle.append(connection)
        if self._waiting:  # someone waits inside the pool: hand it an idle connection through the pool
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            self._pool.release(connection)

    def _execute(self, *args):
        try:
            connection = self._checkout()
        except Exception as error:  # noqa: BLE001 - exhausted pool, or a new connection could not connect
            raise self._wrap(error) from error
        try:
            reused = connection.is_connected
            try:
                connection.send_command(*args)
                return connection.read_response()
            except redis.exceptions.ConnectionError as error:
                if not reused or classify(error) != "connection":
                    raise
                connection.disconnect()  # a socket Redis closed (restart): once more, on a fresh one
                connection.send_command(*args)
                return connection.read_response()
        except Exception as error:  # noqa: BLE001 - every failure becomes a counted cache error
            connection.disconnect()
            if classify(error) in ("connection", "timeout"):
                self._disconnect_idle()  # a restarted server left every idle socket stale
            raise self._wrap(error) from error
        finally:
            self._checkin(connection)

    def _disconnect_idle(self) -> None:
        for connection in list(self._idle):
            connection.disconnect()

    def get(self, key: bytes | str) -> bytes | None:
        return self._execute("GET", key)

    def set(self, key: str, value: bytes, ttl_seconds: float | None) -> None:
        if ttl_seconds is None:
            self._execute("SET", key, value)
        elif float(ttl_seconds).is_integer():
            self._execute("SET", key, value, "EX", int(ttl_seconds))
        else:
            self._execute("SET", key, value, "PX", max(1, int(ttl_seconds * 1000)))

    def ping(self) -> bool:
        self._execute("PING")
        return True

    # ---------------------------------------------------------------- async
    def _async_lane(self) -> "_AsyncLane":
        loop = asyncio.get_running_loop()
        lane = self._async_lanes.get(loop)
        if lane is None:
            with self._async_lock:
                lane = self._async_lanes.get(loop)
                if lane is None:
                    for ended in [old for old in self._async_lanes if old.is_closed()]:
                        del self._async_lanes[ended]  # its loop ended without aclose(): free its sockets
                    lane = _AsyncLane(self._make_pool(_AsyncBlockingPool, AsyncRetry(NoBackoff(), 0)))
                    self._async_lanes[loop] = lane
        return lane

    async def aget(self, key: str) -> bytes | None:
        try:
            return await self._async_lane().execute("GET", key)
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    async def aclose(self) -> None:
        """Close the current loop's async connections (call before the loop ends, e.g. in app shutdown)."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            lane = self._async_lanes.pop(loop, None)
        if lane is not None:
            await lane.aclose()

    def close(self) -> None:
        self._disconnect_idle()
        self._pool.disconnect()


class _AsyncLane:
    """One event loop's fast lane: idle redis.asyncio connections in a deque, in front of a bounded
    blocking pool that makes them. One loop runs one coroutine at a time, so no lock is needed; a
    connection released while someone waits in the pool goes to that waiter through the pool."""

    def __init__(self, pool: redis.asyncio.BlockingConnectionPool):
        self.pool = pool
        self.idle: collections.deque = collections.deque()
        self.waiting = 0

    async def execute(self, *args):
        try:
            connection = self.idle.pop()
        except IndexError:
            self.waiting += 1
            try:
                connection = await self.pool.get_connection()
            finally:
                self.waiting -= 1
        try:
            reused = connection.is_connected
            try:
                await connection.send_command(*args)
                return await connection.read_response()
            except redis.exceptions.ConnectionError as error:
                if not reused or classify(error) != "connection":
                    raise
                await connection.disconnect()  # a socket Redis closed (restart): once more, on a fresh one
                await connection.send_command(*args)
                return await connection.read_response()
        except BaseException as error:  # a failed or cancelled command leaves the socket in an unknown state
            await connection.disconnect(nowait=True)
            if isinstance(error, Exception) and classify(error) in ("connection", "timeout"):
                for idle in list(self.idle):  # a restarted server left every idle socket stale
                    await idle.disconnect(nowait=True)
            raise
        finally:
            await self._release(connection)

    async def _release(self, connection) -> None:
        if self.waiting:
            await self.pool.release(connection)
        else:
            self.idle.append(connection)

    async def aclose(self) -> None:
        self.idle.clear()
        await self.pool.disconnect()
