"""Replay a trace against a real redis-server (one per cell), counting hits and reading INFO.

Each request is what the decorator does: GET its key; on a miss, SET a value of the measured size (with
the TTL, if any). The replay sends that as a Lua script (EVALSHA) over one raw RESP connection
(hiredis parses the replies; only cachedmodel.backend imports redis-py), pipelined: the network is
batched, the order is not changed.

Redis frees memory (evicts) before it runs each command, never inside a script. With one key per
script call (keys_per_call=1) eviction therefore happens between every two requests, exactly as
between the decorator's commands. With k keys per call the k SETs of a call land before the next
eviction, so memory may pass maxmemory by up to k entries for a moment: choose_keys_per_call keeps k
at most 1/500 of the entry capacity (tests/integration/test_advise_replay.py compares it with k=1).
Under noeviction a SET refused with OOM is a miss that stores nothing, as in the decorator.

Redis's LRU clock ticks once a second: keys requested within the same second look equally old to
allkeys-lru / volatile-lru. A replay running at 100,000 requests/s therefore sees a coarser clock than
production at 1,000/s, and its LRU hit ratio reads low (close to allkeys-random) when the cache holds
fewer entries than the replay makes requests in a second; `rate` paces the replay to a production rate
(slow, but the clock is then the production one). LFU and random are not affected this way.

The client's own buffers count in Redis's used_memory, as a real client's do: a pipeline window is
kept small (WINDOW requests, a few KB).
"""
from __future__ import annotations

import shutil
import socket
import time
from dataclasses import asdict, dataclass
from typing import Callable

import hiredis

from cachedmodel.advise.traces import Trace
from cachedmodel.redis_info import parse_info
from cachedmodel.testing.redis_server import RedisServer

POLICIES = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
            "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")
VOLATILE = frozenset(p for p in POLICIES if p.startswith("volatile-"))
WINDOW = 256  # requests per pipelined write
MAX_KEYS_PER_CALL = 64

# KEYS: the requests' keys in order; ARGV[1]: value size in bytes; ARGV[2]: TTL in ms (0: none).
# Returns {hits, writes refused (OOM)}. No shebang: a flagless script may GET under OOM (a hit is
# still a hit), and its SET is refused only when Redis was already out of memory.
SCRIPT = b"""
local hits, refused, value = 0, 0, nil
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) then
    hits = hits + 1
  else
    if value == nil then value = string.rep('x', tonumber(ARGV[1])) end
    local reply
    if ttl > 0 then reply = redis.pcall('SET', KEYS[i], value, 'PX', ttl)
    else reply = redis.pcall('SET', KEYS[i], value) end
    if type(reply) == 'table' and reply.err then refused = refused + 1 end
  end
end
return {hits, refused}
"""


REDIS_MISSING = ("redis-server not found on PATH: the replay runs a real Redis. Install Redis (Debian/Ubuntu: "
                 "sudo apt-get install redis-server; Fedora: sudo dnf install redis; macOS: brew install redis) or "
                 "put the directory of your redis-server on PATH")


def redis_server() -> str | None:
    """The redis-server the replay would run (PATH lookup), or None."""
    return shutil.which("redis-server")


class ReplayError(RuntimeError):
    """Redis answered with an error, or could not be started."""


@dataclass
class Cell:
    """One size x policy measurement."""
    policy: str
    maxmemory: int
    maxmemory_samples: int
    requests: int
    hits: int
    hit_ratio: float
    evicted_keys: int
    expired_keys: int
    refused_writes: int        # SETs refused with OOM (noeviction, or volatile-* with nothing evictable)
    keys: int                  # keys in Redis after the replay
    used_memory: int           # INFO used_memory after the replay
    baseline_memory: int       # used_memory of the empty server before the replay
    keys_per_call: int
    seconds: float
    exact_lru_hit_ratio: float | None = None   # filled in by the caller (simulate) at `keys` entries
    exact_lfu_hit_ratio: float | None = None

    @property
    def bytes_per_entry(self) -> float | None:
        return (self.used_memory - self.baseline_memory) / self.keys if self.keys else None

    def as_dict(self) -> dict:
        return {**asdict(self), "bytes_per_entry": self.bytes_per_entry}


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class Resp:
    """A minimal pipelining RESP client on one socket."""

    def __init__(self, port: int, timeout: float = 60.0):
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()

    def send(self, payload: bytes) -> None:
        self._sock.sendall(payload)

    def read(self):
        while True:
            reply = self._reader.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise ReplyErrorWrapped(str(reply))
                return reply
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ReplayError("redis-server closed the connection")
            self._reader.feed(chunk)

    def call(self, *args: bytes | str):
        self.send(_command(*(a.encode() if isinstance(a, str) else a for a in args)))
        return self.read()

    def close(self) -> None:
        self._sock.close()


class ReplyErrorWrapped(ReplayError):
    """An error reply from Redis."""


def choose_keys_per_call(maxmemory: int, entry_estimate: int) -> int:
    """Keys per script call: at most 1/500 of the cache's estimated entry capacity (1 for small caches)."""
    capacity = max(1, maxmemory // max(1, entry_estimate))
    return max(1, min(MAX_KEYS_PER_CALL, capacity // 500))


def entry_estimate(trace: Trace, value_bytes: int) -> int:
    """A rough size of one entry (key + value + Redis's per-key overhead), for choosing batch sizes."""
    return len(trace.keys[0]) + value_bytes + 64


def replay(trace: Trace, maxmemory: int, policy: str, value_bytes: int, ttl_seconds: float | None = None,
           samples: int = 5, keys_per_call: int | None = None,
           progress: Callable[[int], None] | None = None, rate: float | None = None) -> Cell:
    """Replay `trace` on a fresh redis-server with this maxmemory and policy; the server is always stopped."""
    if policy not in POLICIES:
        raise ValueError(f"unknown eviction policy {policy!r} (one of {', '.join(POLICIES)})")
    if keys_per_call is None:
        keys_per_call = choose_keys_per_call(maxmemory, entry_estimate(trace, value_bytes))
    ttl_ms = max(1, round(ttl_seconds * 1000)) if ttl_seconds else 0
    if redis_server() is None:
        raise ReplayError(REDIS_MISSING)
    server = RedisServer(extra_args=["--maxmemory", str(maxmemory), "--maxmemory-policy", policy,
                                     "--maxmemory-samples", str(samples)])
    try:
        server.start()
    except (RuntimeError, TimeoutError) as error:
        raise ReplayError(f"cannot start redis-server: {error}") from None
    try:
        client = Resp(server.port)
        try:
            return _run(client, trace, maxmemory, policy, value_bytes, ttl_ms, samples, keys_per_call, progress,
                        rate)
        finally:
            client.close()
    finally:
        server.stop()


def _run(client: Resp, trace: Trace, maxmemory: int, policy: str, value_bytes: int, ttl_ms: int, samples: int,
         keys_per_call: int, progress, rate: float | None = None) -> Cell:
    sha = client.call("SCRIPT", "LOAD", SCRIPT)
    sha = sha if isinstance(sha, bytes) else str(sha).encode()
    baseline = parse_info(client.call("INFO", "memory"))["used_memory"]
    bulks = [_bulk(key) for key in trace.keys]
    tail = _bulk(b"%d" % value_bytes) + _bulk(b"%d" % ttl_ms)
    heads = {}
    ids = trace.ids
    total = len(ids)
    hits = refused = 0
    per_window = max(1, WINDOW // keys_per_call)  # calls per pipelined write
    started = time.perf_counter()
    position = 0
    while position < total:
        calls = []
        window_start = position
        for _ in range(per_window):
            if position >= total:
                break
            chunk = ids[position:position + keys_per_call]
            head = heads.get(len(chunk))
            if head is None:
                head = heads[len(chunk)] = (b"*%d\r\n" % (len(chunk) + 5) + _bulk(b"EVALSHA") + _bulk(sha)
                                            + _bulk(b"%d" % len(chunk)))
            calls.append(head + b"".join([bulks[i] for i in chunk]) + tail)
            position += len(chunk)
        client.send(b"".join(calls))
        for _ in calls:
            window_hits, window_refused = client.read()
            hits += window_hits
            refused += window_refused
        if progress is not None:
            progress(position - window_start)
        if rate:  # pacing to the production request rate (Redis's LRU clock ticks once a second)
            ahead = position / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    seconds = time.perf_counter() - started
    text = client.call("INFO", "all")
    info = parse_info(text)
    expired = 0
    for line in (text.decode() if isinstance(text, bytes) else str(text)).splitlines():
        if line.startswith("expired_keys:"):
            expired = int(line.split(":", 1)[1])
    return Cell(policy=policy, maxmemory=maxmemory, maxmemory_samples=samples, requests=total, hits=hits,
                hit_ratio=hits / total, evicted_keys=info["evicted_keys"], expired_keys=expired,
                refused_writes=refused, keys=info["keys"], used_memory=info["used_memory"],
                baseline_memory=baseline, keys_per_call=keys_per_call, seconds=seconds)
