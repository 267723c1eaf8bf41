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

Topologies: one Redis (host/port or url); a Sentinel deployment (the same lanes, over redis-py's
Sentinel-managed connections: a connection asks the Sentinels for the primary when it connects, and
a primary that was demoted answers READONLY, which redis-py turns into a connection error, so the
one retry reconnects to the promoted replica); a Redis Cluster (redis-py's RedisCluster client, which
keeps the slot map and follows MOVED/ASK itself; made lazily so an unreachable cluster at start-up is
a counted miss, not a crash).
"""
from __future__ import annotations

import asyncio
import collections
import os
import threading

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachedmodel.options import CacheOptions, ConfigurationError, scrub, secrets_of, split_endpoint
from cachedmodel.redis_info import combine, parse_info

_INFO = ("INFO", "memory", "stats", "keyspace")
# delete a lease only while it is still ours (it may have expired and been taken by another process)
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"

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


class _BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, _BlockingPool):
    """Sentinel-managed connections (the primary's address is asked at connect time), bounded and blocking."""


class _AsyncBlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, _AsyncBlockingPool):
    """The same for redis.asyncio."""


# a cluster without a usable node for a slot (failover under way, slots not covered): unavailable
_CLUSTER_UNAVAILABLE = (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                        redis.exceptions.SlotNotCoveredError, redis.exceptions.RedisClusterException)


def classify(error: BaseException) -> str:
    """Map a redis-py (or socket) exception to an error kind."""
    if isinstance(error, redis.exceptions.MaxConnectionsError):
        return "pool_exhausted"
    if isinstance(error, (redis.exceptions.TimeoutError, TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(error, (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError,
                          redis.exceptions.NoPermissionError)):
        return "auth"
    if isinstance(error, (redis.exceptions.ConnectionError, OSError, *_CLUSTER_UNAVAILABLE)):
        return "connection"
    if isinstance(error, redis.exceptions.OutOfMemoryError) or str(error).startswith("OOM"):
        return "oom"
    if isinstance(error, redis.exceptions.ResponseError):
        return "response"
    return "other"


def make_backend(options: CacheOptions) -> "RedisBackend | ClusterBackend":
    """The backend for the options' topology: Redis Cluster, or one Redis (directly or via Sentinel)."""
    return ClusterBackend(options) if options.cluster_nodes else RedisBackend(options)


def _common_kwargs(options: CacheOptions) -> dict:
    """Connection options every topology shares: timeouts, credentials, TLS."""
    kwargs = dict(socket_timeout=options.socket_timeout, socket_connect_timeout=options.socket_connect_timeout)
    if options.username:
        kwargs["username"] = options.username
    if options.password:
        kwargs["password"] = options.password  # a password inside the URL takes precedence (redis-py)
    if options.ssl:
        kwargs["ssl"] = True
    if options.ssl_ca_certs:
        kwargs["ssl_ca_certs"] = options.ssl_ca_certs
    return kwargs


def _sentinel_kwargs(options: CacheOptions, retry) -> dict:
    """How the Sentinels themselves are asked: their own password, the same timeouts and TLS, no retry."""
    kwargs = dict(socket_timeout=options.socket_timeout, socket_connect_timeout=options.socket_connect_timeout,
                  retry=retry)
    if options.sentinel_password:
        kwargs["password"] = options.sentinel_password
    if options.ssl:
        kwargs["ssl"] = True
        if options.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = options.ssl_ca_certs
    return kwargs


class _Commands:
    """The commands the decorator sends, over a topology's `_execute` (which raises CacheBackendError)."""

    _secrets: tuple = ()

    def _execute(self, *args):
        raise NotImplementedError

    def _wrap(self, error: BaseException) -> CacheBackendError:
        return CacheBackendError(classify(error), scrub(f"{type(error).__name__}: {error}", self._secrets))

    def get(self, key: bytes | str) -> bytes | None:
        return self._execute("GET", key)

    def set(self, key: str, value: bytes, ttl_seconds: float | None) -> None:
        self._execute(*set_command(key, value, ttl_seconds))

    def acquire(self, key, token: bytes, milliseconds: int) -> bool:
        """SET key token NX PX ms: True when the lease was free and is now ours."""
        return self._execute("SET", key, token, "NX", "PX", milliseconds) is not None

    def release(self, key, token: bytes) -> None:
        self._execute("EVAL", _RELEASE, 1, key, token)

    def exists(self, key) -> bool:
        return bool(self._execute("EXISTS", key))


class RedisBackend(_Commands):
    """get/set of raw bytes under string keys, sync and async, errors as CacheBackendError."""

    def __init__(self, options: CacheOptions):
        self.options = options
        self._secrets = secrets_of(options.url, options.password, options.sentinel_password)
        self._sentinels = [split_endpoint(address) for address in options.sentinels or ()]
        self._sentinel = (redis.sentinel.Sentinel(self._sentinels,
                                                  sentinel_kwargs=_sentinel_kwargs(options, Retry(NoBackoff(), 0)))
                          if self._sentinels else None)
        self._pool = self._make_pool(_BlockingPool, Retry(NoBackoff(), 0), self._sentinel)
        self._idle: collections.deque = collections.deque()  # append/pop are atomic: no lock needed
        self._busy: set = set()  # checked-out connections (set.add/discard are atomic too)
        self._waiting = 0  # callers waiting in the pool for a connection (changed under _waiting_lock)
        self._waiting_lock = threading.Lock()
        self._pid = os.getpid()
        # loop -> its lane. Not a WeakKeyDictionary: the connections' streams reference their loop, so
        # entries would never go away; clients of closed loops are dropped when a new loop asks instead.
        self._async_lanes: dict[asyncio.AbstractEventLoop, _AsyncLane] = {}
        self._async_lock = threading.Lock()

    def _make_pool(self, pool_class, retry, sentinel=None):
        """A bounded blocking pool of `pool_class`, or of its Sentinel-managed twin when `sentinel` is given."""
        options = self.options
        kwargs = dict(_common_kwargs(options), retry=retry, max_connections=options.max_connections,
                      timeout=options.pool_timeout)
        try:
            if sentinel is not None:
                sentinel_class = _BlockingSentinelPool if pool_class is _BlockingPool else _AsyncBlockingSentinelPool
                return sentinel_class(options.sentinel_service, sentinel, db=options.database, **kwargs)
            if options.url:
                kwargs.pop("ssl", None)  # the scheme says it (rediss://)
                return pool_class.from_url(options.url, **kwargs)
            if kwargs.pop("ssl", False):
                kwargs["connection_class"] = (redis.SSLConnection if pool_class is _BlockingPool
                                              else redis.asyncio.SSLConnection)
            return pool_class(host=options.host, port=options.port, db=options.database, **kwargs)
        except (TypeError, ValueError) as error:  # e.g. a bad ?argument in the URL
            raise ConfigurationError(scrub(f"option 'url': {error}", self._secrets)) from None

    @property
    def describe(self) -> str:
        """Where Redis is, without credentials, for log messages."""
        if self._sentinels:
            sentinels = ",".join(self.options.sentinels)
            return f"sentinel://{sentinels}/{self.options.sentinel_service}/{self.options.database}"
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
        return self._execute_on_connection(_one_command, args)

    def _pipeline(self, commands: list[tuple]) -> list:
        """Several commands in one round trip on one connection (replies in order; a reply that is an
        error is raised after all replies were read, so the connection stays in step)."""
        return self._execute_on_connection(_many_commands, commands)

    def _execute_on_connection(self, run, args):
        try:
            connection = self._checkout()
        except Exception as error:  # noqa: BLE001 - exhausted pool, or a new connection could not connect
            raise self._wrap(error) from error
        try:
            reused = connection.is_connected
            try:
                if not reused:
                    connection.connect()  # not send_command's own connect: a Sentinel-managed one asks for the primary
                return run(connection, args)
            except redis.exceptions.ConnectionError as error:
                if not reused or classify(error) != "connection":
                    raise
                connection.disconnect()  # a socket Redis closed (restart, failover): once more, on a fresh one
                connection.connect()
                return run(connection, args)
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

    def mget(self, keys: list) -> list:
        """Values of several keys in one round trip (None for missing ones)."""
        return self._execute("MGET", *keys) if keys else []

    def set_many(self, items: list[tuple], ttl_seconds: float | None) -> None:
        """SET of several (key, value) pairs, pipelined in one round trip."""
        if items:
            self._pipeline([set_command(key, value, ttl_seconds) for key, value in items])

    def ping(self) -> bool:
        self._execute("PING")
        return True

    def info(self) -> dict[str, int]:
        """Memory, evictions, keys and keyspace hits/misses of the Redis (the primary, under Sentinel)."""
        return parse_info(self._execute(*_INFO), self.options.database)

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
                    sentinel = None
                    if self._sentinels:  # asyncio clients of the Sentinels too are per event loop
                        sentinel = redis.asyncio.sentinel.Sentinel(
                            self._sentinels, sentinel_kwargs=_sentinel_kwargs(self.options, AsyncRetry(NoBackoff(), 0)))
                    lane = _AsyncLane(self._make_pool(_AsyncBlockingPool, AsyncRetry(NoBackoff(), 0), sentinel),
                                      sentinel)
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
        if self._sentinel is not None:
            self._sentinel.close()


def set_command(key, value: bytes, ttl_seconds: float | None) -> tuple:
    """SET key value [EX s | PX ms]: whole seconds as EX, fractions as PX."""
    if ttl_seconds is None:
        return ("SET", key, value)
    if float(ttl_seconds).is_integer():
        return ("SET", key, value, "EX", int(ttl_seconds))
    return ("SET", key, value, "PX", max(1, int(ttl_seconds * 1000)))


def _one_command(connection, args):
    connection.send_command(*args)
    return connection.read_response()


def _many_commands(connection, commands):
    connection.send_packed_command(connection.pack_commands(commands))
    replies = []
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except redis.exceptions.ResponseError as error:  # keep reading: the connection stays in step
            replies.append(error)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _send(connection, args) -> None:
    """Send one command on a connected redis.asyncio connection. redis-py's send_command wraps every
    write in asyncio.wait_for (in Python 3.11 a Task per call, a third of a GET's CPU); a command of a
    few bytes goes to the socket at once, so the socket_timeout is only needed when the write buffer
    did not empty (a slow or stuck server): then the drain is bounded by it, as redis-py bounds it."""
    writer = getattr(connection, "_writer", None)
    if writer is None or connection.health_check_interval:
        return await connection.send_command(*args)
    try:
        writer.writelines(connection.pack_command(*args))
        if writer.transport.get_write_buffer_size():
            await asyncio.wait_for(writer.drain(), connection.socket_timeout)
    except asyncio.TimeoutError:
        await connection.disconnect(nowait=True)
        raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
    except (OSError, RuntimeError) as error:  # RuntimeError: the transport was closed under us
        await connection.disconnect(nowait=True)
        raise redis.exceptions.ConnectionError(f"Error while writing to socket: {error}") from error


class _AsyncLane:
    """One event loop's fast lane: idle redis.asyncio connections in a deque, in front of a bounded
    blocking pool that makes them. One loop runs one coroutine at a time, so no lock is needed; a
    connection released while someone waits in the pool goes to that waiter through the pool."""

    def __init__(self, pool: redis.asyncio.BlockingConnectionPool, sentinel=None):
        self.pool = pool
        self.sentinel = sentinel  # this loop's clients of the Sentinels, if any
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
                if not reused:
                    await connection.connect()  # a Sentinel-managed connection asks for the primary here
                await _send(connection, args)
                return await connection.read_response()
            except redis.exceptions.ConnectionError as error:
                if not reused or classify(error) != "connection":
                    raise
                await connection.disconnect()  # a socket Redis closed (restart, failover): once more, on a fresh one
                await connection.connect()
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
        if self.sentinel is not None:
            await self.sentinel.aclose()


class ClusterBackend(_Commands):
    """The RedisBackend interface over redis-py's RedisCluster clients (sync, and one per event loop).

    The client follows MOVED/ASK within a call and refreshes its slot map after a node error; a failed
    call is retried once, on the refreshed map (as a standalone call is on a fresh socket): a
    connection a node closed during a reshard costs a retry, a dead primary one fallback to the
    model per call until its replica takes over, never a stall."""

    def __init__(self, options: CacheOptions):
        self.options = options
        self._secrets = secrets_of(None, options.password)
        self._nodes = [split_endpoint(address) for address in options.cluster_nodes]
        self._client = None  # made at first use: an unreachable cluster must not stop the service
        self._lock = threading.Lock()
        self._async_clients: dict[asyncio.AbstractEventLoop, redis.asyncio.cluster.RedisCluster] = {}
        self._async_lock = threading.Lock()
        self._pid = os.getpid()

    def _kwargs(self) -> dict:
        # max_connections is per node here; an exhausted node pool is a bypass (MaxConnectionsError)
        return dict(_common_kwargs(self.options), max_connections=self.options.max_connections,
                    require_full_coverage=False)

    @property
    def describe(self) -> str:
        return f"cluster://{','.join(self.options.cluster_nodes)}"

    @property
    def in_use(self) -> int:
        return 0  # per-node pools; not tracked across nodes

    def _sync_client(self) -> redis.cluster.RedisCluster:
        if self._pid != os.getpid():  # forked: never share the parent's sockets
            self._client, self._pid = None, os.getpid()
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis.cluster.RedisCluster(
                        startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in self._nodes],
                        retry=Retry(NoBackoff(), 1), **self._kwargs())
                client = self._client
        return client

    def _execute(self, *args):
        try:
            return self._sync_client().execute_command(*args)
        except Exception as error:  # noqa: BLE001 - every failure becomes a counted cache error
            raise self._wrap(error) from error

    def mget(self, keys: list) -> list:
        """One pipeline per hash slot (redis-py's mget_nonatomic), values in the keys' order."""
        if not keys:
            return []
        try:
            return self._sync_client().mget_nonatomic(keys)
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    def set_many(self, items: list[tuple], ttl_seconds: float | None) -> None:
        if not items:
            return
        try:
            pipeline = self._sync_client().pipeline(transaction=False)
            for key, value in items:
                pipeline.execute_command(*set_command(key, value, ttl_seconds))
            pipeline.execute()
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    def ping(self) -> bool:
        try:
            return bool(self._sync_client().ping(target_nodes=redis.cluster.RedisCluster.RANDOM))
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    def info(self) -> dict[str, int]:
        """The same figures summed over the cluster's primaries."""
        try:
            client = self._sync_client()
            return combine(parse_info(client.execute_command(*_INFO, target_nodes=node))
                           for node in client.get_primaries())
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    def _async_client(self) -> redis.asyncio.cluster.RedisCluster:
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            with self._async_lock:
                client = self._async_clients.get(loop)
                if client is None:
                    for ended in [old for old in self._async_clients if old.is_closed()]:
                        del self._async_clients[ended]
                    client = redis.asyncio.cluster.RedisCluster(
                        startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port) for host, port in self._nodes],
                        retry=AsyncRetry(NoBackoff(), 1), **self._kwargs())
                    self._async_clients[loop] = client
        return client

    async def aget(self, key: str) -> bytes | None:
        try:
            return await self._async_client().execute_command("GET", key)
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._async_lock:
            client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
