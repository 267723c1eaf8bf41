"""Prometheus collectors (created once per process, in the default registry) and burst-limited logging.

The default registry is what rest-model-service's /metrics and prometheus_client's exporters
expose. Every series is labelled with `model` (the model's qualified name).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

logger = logging.getLogger("cachedmodel")


class Tally:
    """One series of a per-prediction counter. prometheus_client's Counter.inc takes a lock and three
    calls, a fifth of a local-tier hit; here a step of an itertools.count (atomic under the GIL) counts
    one, and larger amounts (a batch's rows) take a lock. A read takes a step of its own, remembered."""

    __slots__ = ("_ones", "_reads", "_more", "_lock", "created")

    def __init__(self):
        self._ones = itertools.count()
        self._reads = 0
        self._more = 0.0
        self._lock = threading.Lock()
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount == 1:
            next(self._ones)
            return
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        with self._lock:
            self._more += amount

    def get(self) -> float:
        with self._lock:
            ones = next(self._ones) - self._reads
            self._reads += 1
            return ones + self._more


class TallyCounter:
    """A labelled counter family of Tally series in a registry, exposed as a prometheus_client Counter
    is (<name>_total and <name>_created per label set): the cheap counter of the per-prediction series."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry=REGISTRY):
        self._name, self._documentation, self._labelnames = name, documentation, tuple(labelnames)
        self._series: dict[tuple, Tally] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str, **labels: str) -> Tally:
        """The series of one label set, by position or by name (as prometheus_client's labels())."""
        key = tuple(str(value) for value in values) if values else tuple(str(labels[name]) for name in self._labelnames)
        if len(key) != len(self._labelnames):
            raise ValueError(f"{self._name} takes the labels {', '.join(self._labelnames)}")
        with self._lock:
            tally = self._series.get(key)
            if tally is None:
                tally = self._series[key] = Tally()
            return tally

    def describe(self):
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self):
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            series = list(self._series.items())
        for labels, tally in series:
            family.add_metric(labels, tally.get(), created=tally.created)
        yield family


REQUESTS = TallyCounter("cachedmodel_cache_requests",
                        "Predictions the cache saw, each counted once: hits (every tier) + misses + bypasses.",
                        ["model"])
HITS = TallyCounter("cachedmodel_cache_hits", "Predictions answered from the cache, by tier (local or redis).",
                    ["model", "tier"])
MISSES = TallyCounter("cachedmodel_cache_misses",
                      "Predictions whose lookup found no usable entry (the model was called).", ["model"])
BYPASSES = Counter("cachedmodel_cache_bypass",
                   "Predictions that went to the model without a cache answer, by reason: circuit_open (Redis "
                   "skipped after repeated failures), redis_error (the lookup failed; the kind is in "
                   "cachedmodel_cache_errors_total), pool_exhausted (every connection of max_connections stayed "
                   "busy for pool_timeout, by default socket_timeout; not a failure), invalid_input (the input "
                   "schema rejects it: the model answers as it would uncached), unkeyable (no key could be built).",
                   ["model", "reason"])
ERRORS = Counter("cachedmodel_cache_errors",
                 "Cache failures, by kind (connection, timeout, oom, response, auth, decode, encode, other): "
                 "failed lookups and stores, unreadable entries, outputs that could not be stored.",
                 ["model", "kind"])
STORE_SKIPS = Counter("cachedmodel_cache_store_skipped",
                      "Model outputs not stored because no pooled connection was free (pool_exhausted).",
                      ["model", "reason"])
LOOKUP_SECONDS = Histogram("cachedmodel_cache_lookup_seconds", "Latency of Redis lookups (GET), hit or miss.",
                           ["model"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05, 0.1, 0.25, 0.5, 1.0))
MODEL_SECONDS = Histogram("cachedmodel_model_seconds",
                          "Time the wrapped model took per call the cache let through (misses, bypasses, background "
                          "refreshes; a batch call counts once). Hits x its mean = the model time the cache saved.",
                          ["model"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                              2.5, 5.0, 10.0, 30.0))
EPOCH = Gauge("cachedmodel_cache_epoch",
              "The key epoch this process serves (option epoch; the operator reports it as status.cache.epoch).",
              ["model"])
CIRCUIT_OPEN = Gauge("cachedmodel_circuit_breaker_open", "1 while Redis calls are skipped after repeated failures.",
                     ["model"])
SHARED = Counter("cachedmodel_singleflight_shared",
                 "Predictions that waited for a concurrent identical miss instead of calling the model "
                 "(counted among the misses).", ["model"])

STALE_HITS = Counter("cachedmodel_cache_stale_hits",
                     "Hits served from an entry past its freshness (stale-while-revalidate; also counted in "
                     "cachedmodel_cache_hits_total); each starts a background refresh unless one runs.", ["model"])
REFRESHES = Counter("cachedmodel_cache_refreshes",
                    "Background refreshes that stored a new entry (stale-while-revalidate).", ["model"])

ERROR_KINDS = ("connection", "timeout", "oom", "response", "auth", "decode", "encode", "other")
BYPASS_REASONS = ("circuit_open", "redis_error", "pool_exhausted", "invalid_input", "unkeyable")


class ModelMetrics:
    """The collectors' children for one model label, resolved once (labels() is not free per request)."""

    def __init__(self, model: str):
        self.model = model
        self.requests = REQUESTS.labels(model=model)
        self.redis_hits = HITS.labels(model=model, tier="redis")
        self.local_hits = HITS.labels(model=model, tier="local")
        self.misses = MISSES.labels(model=model)
        self.lookup_seconds = LOOKUP_SECONDS.labels(model=model)
        self.model_seconds = MODEL_SECONDS.labels(model=model)
        self.circuit_open = CIRCUIT_OPEN.labels(model=model)
        self.epoch = EPOCH.labels(model=model)
        self.shared = SHARED.labels(model=model)
        self.stale_hits = STALE_HITS.labels(model=model)
        self.refreshes = REFRESHES.labels(model=model)
        self.errors = {kind: ERRORS.labels(model=model, kind=kind) for kind in ERROR_KINDS}
        self.bypasses = {reason: BYPASSES.labels(model=model, reason=reason) for reason in BYPASS_REASONS}
        self.store_skips = {"pool_exhausted": STORE_SKIPS.labels(model=model, reason="pool_exhausted")}


class BurstLogger:
    """Log the first error of a burst, then at most one summary per `interval` until recovery."""

    def __init__(self, name: str, interval: float = 60.0, clock=time.monotonic):
        self.name = name
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._bursts: dict[str, list] = {}  # kind -> [last_logged_at, suppressed_count]

    def error(self, kind: str, message: str) -> bool:
        """Returns True when the message was logged (not suppressed)."""
        now = self._clock()
        with self._lock:
            burst = self._bursts.get(kind)
            if burst is None:
                self._bursts[kind] = [now, 0]
                suppressed = None
            elif now - burst[0] >= self.interval:
                suppressed, burst[0], burst[1] = burst[1], now, 0
            else:
                burst[1] += 1
                return False
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        logger.warning("cache for %s: %s error, answering from the model: %s%s", self.name, kind, message, more)
        return True

    def recovered(self, kinds: tuple[str, ...] | None = None) -> None:
        """End the bursts of `kinds` (default: all); logs once if any was active."""
        if not self._bursts:
            return
        with self._lock:
            ended = [kind for kind in list(self._bursts) if kinds is None or kind in kinds]
            for kind in ended:
                del self._bursts[kind]
        if ended:
            logger.warning("cache for %s: recovered after %s errors", self.name, ", ".join(sorted(ended)))
