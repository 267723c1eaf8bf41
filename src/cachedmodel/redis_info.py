"""Redis-side figures (memory, maxmemory, evictions, keys, keyspace hits/misses) as `cachedmodel_redis_*`
series, so that evictions can explain a falling hit ratio next to the cache's own counters.

Sampled by one background thread per process at a bounded rate (each decorator's
`redis_info_interval_seconds`, at least 1 s apart per decorator), never on the request path: a scrape
of /metrics only reads the last sample. A failed sample sets `cachedmodel_redis_up` to 0 and is
neither a cache error nor a circuit-breaker failure (it is not a prediction). Redis counters are
exported as Prometheus counters, so a Redis restart reads as a counter reset to `rate()`.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable, Iterable

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

logger = logging.getLogger("cachedmodel")

MIN_INTERVAL_SECONDS = 1.0
# INFO field -> (series, help, kind); values summed over the nodes sampled (cluster primaries)
FIELDS = {
    "used_memory": ("cachedmodel_redis_used_memory_bytes", "Memory Redis uses (INFO used_memory).", "gauge"),
    "maxmemory": ("cachedmodel_redis_maxmemory_bytes", "Redis maxmemory (0 = no limit).", "gauge"),
    "keys": ("cachedmodel_redis_keys", "Keys in the cache's Redis database (INFO keyspace).", "gauge"),
    "evicted_keys": ("cachedmodel_redis_evicted_keys", "Keys Redis evicted under maxmemory.", "counter"),
    "keyspace_hits": ("cachedmodel_redis_keyspace_hits", "Successful key lookups in Redis (all clients).", "counter"),
    "keyspace_misses": ("cachedmodel_redis_keyspace_misses", "Failed key lookups in Redis (all clients).", "counter"),
    "nodes": ("cachedmodel_redis_nodes", "Redis nodes sampled (1, or the cluster's primaries).", "gauge"),
}


def parse_info(reply, database: int = 0) -> dict[str, int]:
    """The FIELDS of one node's INFO reply (memory, stats, keyspace sections): raw text, or the dict
    redis-py's clients parse it into."""
    if isinstance(reply, dict):
        values, keyspace = reply, reply.get(f"db{database}") or {}
    else:
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        values = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep and not key.startswith("#"):
                values[key] = value
        keyspace = dict(part.split("=", 1) for part in values.get(f"db{database}", "").split(",") if "=" in part)
    return {"used_memory": int(values.get("used_memory", 0)), "maxmemory": int(values.get("maxmemory", 0)),
            "keys": int(keyspace.get("keys", 0)), "evicted_keys": int(values.get("evicted_keys", 0)),
            "keyspace_hits": int(values.get("keyspace_hits", 0)),
            "keyspace_misses": int(values.get("keyspace_misses", 0)), "nodes": 1}


def combine(samples: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sum per-node samples (a cluster's primaries)."""
    total = dict.fromkeys(FIELDS, 0)
    for sample in samples:
        for field, value in sample.items():
            total[field] += value
    return total


class _Entry:
    __slots__ = ("read", "interval", "due", "sample", "sampled_at", "up")

    def __init__(self, read: Callable[[], dict[str, int]], interval: float):
        self.read, self.interval, self.due = read, max(MIN_INTERVAL_SECONDS, interval), 0.0
        self.sample: dict[str, int] | None = None
        self.sampled_at = 0.0
        self.up = 0


class RedisInfoSampler:
    """Registry of (model -> INFO reader), one sampling thread, and the Prometheus collector."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._entries: dict[str, _Entry] = {}
        # re-entrant: a garbage collection can start on any allocation, also while this thread holds the
        # lock, and run a dead owner's finalizer (_drop), which takes it again
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = clock

    def register(self, model: str, owner: object, read: Callable[[], dict[str, int]], interval: float) -> None:
        """Sample `read()` for `model` every `interval` s while `owner` lives (or until unregister)."""
        entry = _Entry(read, interval)
        weakref.finalize(owner, self._drop, model, entry)
        with self._lock:
            self._entries[model] = entry
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cachedmodel-redis-info", daemon=True)
                self._thread.start()
        self._wake.set()

    def unregister(self, model: str, read: Callable[[], dict[str, int]]) -> None:
        """Stop sampling `model` if `read` is still its reader (another decorator may have taken the name)."""
        with self._lock:
            entry = self._entries.get(model)
            if entry is not None and entry.read == read:
                del self._entries[model]

    def _drop(self, model: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(model) is entry:
                del self._entries[model]

    def sample_due(self) -> float:
        """Sample every entry that is due; returns the seconds until the next one is."""
        now = self._clock()
        with self._lock:
            due = [(model, entry) for model, entry in self._entries.items() if entry.due <= now]
        for model, entry in due:
            try:
                entry.sample, entry.up, entry.sampled_at = entry.read(), 1, time.time()
            except Exception as error:  # noqa: BLE001 - a failed sample only says so in cachedmodel_redis_up
                entry.up = 0
                logger.debug("Redis INFO for %s failed: %s", model, error)
            entry.due = self._clock() + entry.interval
        with self._lock:
            upcoming = [entry.due for entry in self._entries.values()]
        return max(0.05, min(upcoming) - self._clock()) if upcoming else 60.0

    def _run(self) -> None:
        while True:
            wait = self.sample_due()
            self._wake.wait(wait)
            self._wake.clear()

    def collect(self):
        with self._lock:
            entries = list(self._entries.items())
        families = {field: (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, text,
                                                                                              labels=["model"])
                    for field, (name, text, kind) in FIELDS.items()}
        up = GaugeMetricFamily("cachedmodel_redis_up", "1 when the last INFO sample of the cache's Redis "
                               "succeeded.", labels=["model"])
        sampled = GaugeMetricFamily("cachedmodel_redis_sampled_timestamp_seconds",
                                    "Unix time of the last successful INFO sample (staleness).", labels=["model"])
        for model, entry in entries:
            up.add_metric([model], entry.up)
            if entry.sample is None:
                continue
            sampled.add_metric([model], entry.sampled_at)
            for field, family in families.items():
                family.add_metric([model], entry.sample[field])
        yield from families.values()
        yield up
        yield sampled


SAMPLER = RedisInfoSampler()
REGISTRY.register(SAMPLER)
