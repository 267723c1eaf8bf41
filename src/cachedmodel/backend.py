"""The Redis backend: the only module of the library that imports `redis`.

Sync calls (GET, the hot path of every cache hit, SET and PING) go straight to redis-py Connection
objects (same hiredis parser, same socket options) kept in a lock-free deque: redis-py's per-command
wrapper (pool checkout with a readiness poll, retry and observability hooks) costs more than the rest
of a hit. The deque is only a fast lane in front of a redis-py BlockingConnectionPool, which creates
every connection, so at most `max_connections` exist; when all are busy a caller waits for one, up to
`connection_wait` (pool_timeout, by default socket_timeout: busy connections of our own are a wait,
never a reason to send a cached request to the model), and only then gets PoolExhaustedError (kind
"pool_exhausted": a bypass, never a circuit-breaker failure, since Redis was not even asked).

Async calls (the service's fast path) run per event loop (asyncio connections cannot cross loops): a
deque of redis.asyncio connections made by that loop's own bounded pool (the full redis.asyncio client
costs ~25 us more a GET). A lookup that finds a free connection and nobody queued sends its GET at once
on its own task; the others are coalesced (auto-pipelining, as ioredis and Lettuce do it): the keys
queued while the connection is busy go as one MGET when it is free, identical keys once, and a lookup
of a key whose read is in flight shares that read. So a burst of N hits costs a few round trips on one
connection: it needs no more connections than a trickle, and never waits for a connect. Their deadlines
(socket_timeout, socket_connect_timeout) are the lane's own, checked a few loop iterations after they
pass and not while Redis's answer is waiting to be read: a loop busy with a burst is not a slow Redis.
Redis Cluster: every async lookup is coalesced, a batch being one MGET per hash slot pipelined per node
(redis-py's mget_nonatomic), at most max_connections batches in flight; the sync cluster client, whose
node pools do not block, retries an exhausted node pool until connection_wait.

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
import math
import os
import select
import threading
import time
from typing import Callable

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
    """Every pooled connection stayed busy for the whole connection wait. redis-py's blocking pools raise a plain
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

    def _make_pool(self, pool_class, retry, sentinel=None, socket_timeouts: bool = True):
        """A bounded blocking pool of `pool_class`, or of its Sentinel-managed twin when `sentinel` is given.
        socket_timeouts=False: the connections' own timeouts are off (the async lane bounds its calls itself)."""
        options = self.options
        kwargs = dict(_common_kwargs(options), retry=retry, max_connections=options.max_connections,
                      timeout=options.connection_wait)
        if not socket_timeouts:
            kwargs.update(socket_timeout=None, socket_connect_timeout=None)
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
        """No idle connection: make one, or wait for one (the pool bounds their number) up to
        connection_wait: pool_timeout, by default socket_timeout."""
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
                    pool = self._make_pool(_AsyncBlockingPool, AsyncRetry(NoBackoff(), 0), sentinel,
                                           socket_timeouts=False)
                    lane = _AsyncLane(pool, sentinel, self.options, self._wrap)
                    self._async_lanes[loop] = lane
        return lane

    async def aget(self, key: str) -> bytes | None:
        """GET on this event loop's lane: at once on a free connection, else in the next coalesced MGET
        (raises CacheBackendError)."""
        return await self._async_lane().get(key)

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


_ABSENT = object()
# A deadline on the event loop waits this many more loop iterations after its time has passed (each
# iteration polls the sockets once: microseconds on an idle loop). asyncio's timeouts cancel on wall
# time: when the loop is busy for longer than socket_timeout (a burst of thousands of requests, each
# iteration running hundreds of them), a reply that arrived in time is read only after the timer fired,
# and a healthy Redis would read as timed out (and open the breaker). A reply takes about two
# iterations to be read once it is in; a new connection about a dozen (TCP connect, transport, the
# handshake's round trips), whatever each iteration costs.
_GRACE_ITERATIONS = 8
_CONNECT_GRACE_ITERATIONS = 32


def _call_late(loop: asyncio.AbstractEventLoop, seconds: float, callback, *args,
               iterations: int = _GRACE_ITERATIONS) -> asyncio.TimerHandle:
    """loop.call_later(seconds, callback, *args), the callback run `iterations` loop iterations later."""
    return loop.call_later(seconds, _hop, loop, iterations, callback, args)


def _hop(loop, left: int, callback, args) -> None:
    if left:
        loop.call_soon(_hop, loop, left - 1, callback, args)
    else:
        callback(*args)


def _answer_pending(connection) -> bool:
    """Bytes from Redis wait to be read on this connection (in asyncio's buffer or in the socket's)."""
    reader, writer = getattr(connection, "_reader", None), getattr(connection, "_writer", None)
    if reader is None or writer is None:
        return False
    if getattr(reader, "_buffer", None):
        return True
    sock = writer.transport.get_extra_info("socket")
    try:
        return sock is not None and bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False


class _Watch:
    """The deadline of one Redis call on the async lane: cancels the calling task when it expires (the
    call then raises redis' TimeoutError), unless Redis's answer is already waiting to be read (then it
    looks again a few loop iterations later); `done` once the call returned."""

    __slots__ = ("task", "connection", "expired", "done", "extensions")

    def __init__(self, task: asyncio.Task, connection):
        self.task, self.connection, self.expired, self.done, self.extensions = task, connection, False, False, 0

    def due(self) -> None:
        if self.done:
            return
        if self.extensions < 16 and _answer_pending(self.connection):  # in time; the loop was busy elsewhere
            self.extensions += 1
            _call_late(self.task.get_loop(), 0, self.due)
            return
        self.expired = True
        self.task.cancel()


# kinds after which Redis cannot answer the lookups queued behind the failed call either: they fail with
# it at once, so a request pays at most one timeout (and a dead Redis is not asked once per batch)
_UNANSWERABLE = frozenset({"connection", "timeout"})


class _Coalescer:
    """One event loop's lookup coalescer ("auto-pipelining", as ioredis and Lettuce do it): lookups that
    find no free connection enqueue (key, future), and one flush scheduled with loop.call_soon sends every
    key queued in that tick as one MGET on one connection; a flush that finds more keys queued when its
    reply is in sends them next, on the same connection. A burst of N hits therefore costs a few round
    trips on a few connections instead of N connections or N waits. Identical keys share one read: in a
    batch one key is sent once, and a lookup of a key whose read is in flight waits for that read.

    Every waiter has its own future: a cancelled waiter cancels only its own. A failed read fails every
    waiter of its batch (each gets its own CacheBackendError, so each request is counted), and when
    Redis cannot answer (connection, timeout) the lookups queued behind it fail with it at once. While no
    connection is free the queue waits up to `wait` (pool_timeout, by default socket_timeout); only if
    no call on this lane completed during that whole time does it fail as pool_exhausted (a bypass,
    never a breaker failure). Deadlines are checked a few loop iterations after their timer fires (see
    _GRACE_ITERATIONS), so a busy event loop is not mistaken for a slow Redis or exhausted connections."""

    def __init__(self, wait: float, wrap: Callable[[BaseException], "CacheBackendError"]):
        self.loop = asyncio.get_running_loop()
        self.wait = wait
        self.wrap = wrap
        self.queue: dict = {}     # key -> [future, ...]: lookups waiting for the next batch
        self.reading: dict = {}   # key -> None or [future, ...]: reads in flight, and who else waits for them
        self.kicked = False       # a _kick is scheduled
        self.timer = None         # the queue's deadline while no connection is free
        self.progress = self.loop.time()  # when a call on this lane last completed
        self.tasks: set = set()   # running flushes

    # ------------------------------------------------------------ waiting
    def _enqueue(self, key) -> asyncio.Future:
        future = self.loop.create_future()
        self._enqueue_future(key, future)
        return future

    def _enqueue_future(self, key, future: asyncio.Future) -> None:
        waiters = self.queue.get(key)
        if waiters is None:
            self.queue[key] = [future]
            self._schedule()
        else:
            waiters.append(future)

    def _follow(self, key, followers) -> asyncio.Future:
        """Wait for the read of `key` that is in flight."""
        future = self.loop.create_future()
        if followers is None:
            self.reading[key] = [future]
        else:
            followers.append(future)
        return future

    def _schedule(self) -> None:
        if not self.kicked:
            self.kicked = True
            self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        self.kicked = False
        if not self.queue:
            return
        try:
            handle = self._take()
        except Exception as error:  # noqa: BLE001 - e.g. a connection object could not be made
            self._fail_queue(error)
            return
        if handle is None:  # every connection busy: the next one released flushes the queue
            self._arm()
            return
        task = self.loop.create_task(self._flush(handle))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _flush(self, handle) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, {}
                self._disarm()
                reading = self.reading
                for key, waiters in batch.items():
                    reading.setdefault(key, waiters)
                try:
                    values = await self._fetch(handle, list(batch))
                except BaseException as error:
                    self._settle(batch, error=error)
                    if not isinstance(error, Exception):
                        raise
                else:
                    self._settle(batch, values)
        finally:
            self._give(handle)

    def _settle(self, batch: dict, values: list | None = None, error: BaseException | None = None) -> None:
        reading = self.reading
        for index, (key, waiters) in enumerate(batch.items()):
            if reading.get(key) is waiters:
                del reading[key]
            if error is None:
                value = values[index]
                for future in waiters:
                    if not future.done():
                        future.set_result(value)
            else:
                self._fail(waiters, error)
        if isinstance(error, Exception) and classify(error) in _UNANSWERABLE:
            self._fail_queue(error)

    def _fail(self, waiters: list, error: BaseException) -> None:
        for future in waiters:
            if not future.done():
                if isinstance(error, Exception):
                    future.set_exception(self.wrap(error))
                else:  # the flush itself was cancelled (its loop is closing)
                    future.cancel()

    def _fail_queue(self, error: BaseException) -> None:
        queue, self.queue = self.queue, {}
        self._disarm()
        for waiters in queue.values():
            self._fail(waiters, error)

    # ------------------------------------------------------------ the queue's deadline
    def _arm(self) -> None:
        if self.timer is None:  # (the calls in flight time out first: then the queue fails with their error)
            self.timer = _call_late(self.loop, self.wait, self._expire, self.queue,
                                    iterations=_CONNECT_GRACE_ITERATIONS)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self, queue: dict) -> None:
        if self.queue is not queue or not queue:
            return  # flushed (or failed) meanwhile
        self.timer = None
        idle_for = self.loop.time() - self.progress
        if idle_for < self.wait:  # calls do complete: a connection is about to be free
            self.timer = _call_late(self.loop, self.wait - idle_for, self._expire, queue,
                                    iterations=_CONNECT_GRACE_ITERATIONS)
            return
        self._fail_queue(PoolExhaustedError(f"no connection free for {self.wait}s"))

    async def _close_flushes(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self._fail_queue(asyncio.CancelledError())

    # ------------------------------------------------------------ per topology
    def _take(self):
        """A connection (or a slot) for a flush, or None when none is free now."""
        raise NotImplementedError

    async def _fetch(self, handle, keys: list) -> list:
        raise NotImplementedError

    def _give(self, handle) -> None:
        raise NotImplementedError


class _AsyncLane(_Coalescer):
    """One event loop's lane to one Redis (directly or via Sentinel): idle redis.asyncio connections in a
    deque, made by a bounded pool (at most max_connections). A lookup that finds a free connection and
    nobody queued sends its GET at once, on its own task (the single-request hit path: no extra hop);
    otherwise it joins the coalescer's next MGET. One loop runs one coroutine at a time: no lock."""

    def __init__(self, pool: redis.asyncio.BlockingConnectionPool, sentinel, options: CacheOptions, wrap):
        super().__init__(options.connection_wait, wrap)
        self.pool = pool
        self.sentinel = sentinel  # this loop's clients of the Sentinels, if any
        self.idle: collections.deque = collections.deque()
        self.busy = 0  # connections checked out (a direct GET or a flush)
        # the pool's connections have no timeouts of their own: _call bounds each call (see _GRACE_ITERATIONS)
        self.read_timeout = options.socket_timeout
        self.connect_timeout = options.socket_connect_timeout

    async def get(self, key):
        reading = self.reading
        followers = reading.get(key, _ABSENT)
        if followers is not _ABSENT:  # the same key is being read: share that read
            return await self._follow(key, followers)
        if self.queue or not self.idle:
            return await self._enqueue(key)
        reading[key] = None
        connection = self.idle.pop()
        self.busy += 1
        try:
            value = await self._call(connection, ("GET", key))
        except BaseException as error:
            await self._broken(connection, error)
            self._release(connection)
            followers = reading.pop(key, None)
            if isinstance(error, Exception):
                if followers:
                    self._fail(followers, error)
                if classify(error) in _UNANSWERABLE:
                    self._fail_queue(error)
                raise self.wrap(error) from error
            if followers:  # this request was cancelled: the others still get an answer
                for future in followers:
                    if not future.done():
                        self._enqueue_future(key, future)
            raise
        self._release(connection)
        followers = reading.pop(key)
        if followers is not None:
            for future in followers:
                if not future.done():
                    future.set_result(value)
        return value

    async def _call(self, connection, args, retry: bool = True):
        """One command on a checked-out connection, within socket_timeout (plus socket_connect_timeout
        when it connects first); a connection error on a socket that was already open (Redis restarted and
        closed it) is retried once on a fresh one."""
        connect = not connection.is_connected
        watch = _Watch(asyncio.current_task(), connection)
        if connect:
            timer = _call_late(self.loop, self.read_timeout + self.connect_timeout, watch.due,
                               iterations=_CONNECT_GRACE_ITERATIONS)
        else:
            timer = _call_late(self.loop, self.read_timeout, watch.due)
        try:
            if connect:
                await connection.connect()  # a Sentinel-managed connection asks for the primary here
            await _send(connection, args)
            return await connection.read_response(timeout=math.inf)  # (bounded by the watch)
        except asyncio.CancelledError:
            if watch.expired and watch.task.uncancel() == 0:  # our deadline, not a cancelled request
                raise redis.exceptions.TimeoutError(
                    f"Timeout {'connecting to' if connect else 'reading from'} Redis") from None
            raise
        except redis.exceptions.ConnectionError as error:
            if connect or not retry or classify(error) != "connection":
                raise
        finally:
            watch.done = True
            timer.cancel()
        await connection.disconnect()  # a socket Redis closed (restart, failover): once more, on a fresh one
        return await self._call(connection, args, retry=False)

    async def _broken(self, connection, error: BaseException) -> None:
        """A failed or cancelled command leaves the socket in an unknown state: close it (it reconnects
        when next used); after a connection error or timeout, the idle sockets are stale too."""
        await connection.disconnect(nowait=True)
        if isinstance(error, Exception) and classify(error) in _UNANSWERABLE:
            for idle in list(self.idle):
                await idle.disconnect(nowait=True)

    def _release(self, connection) -> None:
        self.busy -= 1
        self.progress = self.loop.time()
        self.idle.append(connection)
        if self.queue:
            self._schedule()

    def _take(self):
        """An idle connection; or, when none is in use either (the lane's first call, or every connection
        was taken away), a new one. While a call is in flight the queue waits for its connection instead:
        one connection carries a burst (a batch per round trip), and a new one would cost a connect,
        which in a burst takes a dozen loop iterations of hundreds of requests each."""
        try:
            connection = self.idle.pop()
        except IndexError:
            if self.busy:
                return None
            try:
                connection = self.pool.get_available_connection()  # up to max_connections (connects when used)
            except redis.exceptions.MaxConnectionsError:
                return None
        self.busy += 1
        return connection

    async def _fetch(self, connection, keys: list) -> list:
        try:
            if len(keys) == 1:
                return [await self._call(connection, ("GET", keys[0]))]
            return await self._call(connection, ("MGET", *keys))
        except BaseException as error:
            await self._broken(connection, error)
            raise

    def _give(self, connection) -> None:
        self._release(connection)

    async def aclose(self) -> None:
        await self._close_flushes()
        self.idle.clear()
        await self.pool.disconnect()
        if self.sentinel is not None:
            await self.sentinel.aclose()


class _ClusterLane(_Coalescer):
    """One event loop's lookups to a Redis Cluster: every lookup is coalesced, and a batch is one
    mget_nonatomic (per node one pipeline of one MGET per hash slot, on one connection of that node).
    At most max_connections batches are in flight, so no node's pool (max_connections each) runs out."""

    def __init__(self, client: "redis.asyncio.cluster.RedisCluster", limit: int, wait: float, wrap):
        super().__init__(wait, wrap)
        self.client = client
        self.free = limit

    async def get(self, key):
        followers = self.reading.get(key, _ABSENT)
        if followers is not _ABSENT:
            return await self._follow(key, followers)
        return await self._enqueue(key)

    def _take(self):
        if self.free <= 0:
            return None
        self.free -= 1
        return True

    async def _fetch(self, _, keys: list) -> list:
        if len(keys) == 1:
            return [await self.client.execute_command("GET", keys[0])]
        return await self.client.mget_nonatomic(keys)

    def _give(self, _) -> None:
        self.free += 1
        self.progress = self.loop.time()
        if self.queue:
            self._schedule()

    async def aclose(self) -> None:
        await self._close_flushes()
        await self.client.aclose()


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
        self._async_lanes: dict[asyncio.AbstractEventLoop, _ClusterLane] = {}
        self._async_lock = threading.Lock()
        self._pid = os.getpid()

    def _kwargs(self) -> dict:
        # max_connections is per node here; a node pool that stays exhausted for connection_wait is a bypass
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

    def _waiting(self, call):
        """call(), again while a node's pool is exhausted (redis-py's cluster pools do not block; a busy
        pool is a wait, not a reason to skip Redis), up to connection_wait; then its MaxConnectionsError
        goes up (pool_exhausted: a bypass, never a breaker failure)."""
        deadline, pause = None, 0.001
        while True:
            try:
                return call()
            except redis.exceptions.MaxConnectionsError:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.options.connection_wait
                elif now >= deadline:
                    raise
                time.sleep(min(pause, max(0.0, deadline - now)))
                pause = min(pause * 2, 0.02)

    def _execute(self, *args):
        try:
            return self._waiting(lambda: self._sync_client().execute_command(*args))
        except Exception as error:  # noqa: BLE001 - every failure becomes a counted cache error
            raise self._wrap(error) from error

    def mget(self, keys: list) -> list:
        """One pipeline per hash slot (redis-py's mget_nonatomic), values in the keys' order."""
        if not keys:
            return []
        try:
            return self._waiting(lambda: self._sync_client().mget_nonatomic(keys))
        except Exception as error:  # noqa: BLE001
            raise self._wrap(error) from error

    def set_many(self, items: list[tuple], ttl_seconds: float | None) -> None:
        if not items:
            return

        def store():
            pipeline = self._sync_client().pipeline(transaction=False)
            for key, value in items:
                pipeline.execute_command(*set_command(key, value, ttl_seconds))
            pipeline.execute()
        try:
            self._waiting(store)
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

    def _async_lane(self) -> _ClusterLane:
        loop = asyncio.get_running_loop()
        lane = self._async_lanes.get(loop)
        if lane is None:
            with self._async_lock:
                lane = self._async_lanes.get(loop)
                if lane is None:
                    for ended in [old for old in self._async_lanes if old.is_closed()]:
                        del self._async_lanes[ended]
                    client = redis.asyncio.cluster.RedisCluster(
                        startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port) for host, port in self._nodes],
                        retry=AsyncRetry(NoBackoff(), 1), **self._kwargs())
                    lane = _ClusterLane(client, self.options.max_connections, self.options.connection_wait,
                                        self._wrap)
                    self._async_lanes[loop] = lane
        return lane

    async def aget(self, key: str) -> bytes | None:
        """GET through this event loop's coalescer: lookups of one tick go as one mget_nonatomic (one
        pipeline per node), identical keys once (raises CacheBackendError)."""
        return await self._async_lane().get(key)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._async_lock:
            lane = self._async_lanes.pop(loop, None)
        if lane is not None:
            await lane.aclose()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
