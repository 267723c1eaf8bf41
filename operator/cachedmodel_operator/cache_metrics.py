"""status.cache: the cache's figures read from the model pods' /metrics (pure: text and pods in, dicts out).

The operator reads each ready model pod's Prometheus page (http://<pod IP>:<spec.model.port>/metrics),
parses it with prometheus_client's own text parser and sums the pods:

* requests, hits, misses, bypasses and errors are counters of each pod's process: their sum over the
  pods is what `sum(cachedmodel_cache_requests_total)` would show ("since the pods started"), and
  requests == hits + misses + bypasses exactly (the service counts every prediction once);
* the Redis figures (used memory, maxmemory, keys, evicted keys) come from the Redis INFO sample each pod
  takes in the background; every pod sees the same Redis, so the newest sample wins (never a sum);
* the recent hit ratio is the change of the counters since a baseline snapshot at most WINDOW_SECONDS old,
  pod by pod (a pod whose counters went down restarted: its whole count is new), so a pod restart or a
  rollout never makes it negative.

Nothing here raises on bad input: a page that does not parse is a scrape error of that pod.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

# sample name -> field of PodSample.counters (summed over every `model` label of one pod)
COUNTERS = {
    "cachedmodel_cache_requests_total": "requests",
    "cachedmodel_cache_hits_total": "hits",
    "cachedmodel_cache_misses_total": "misses",
    "cachedmodel_cache_bypass_total": "bypasses",
    "cachedmodel_cache_errors_total": "errors",
}
# sample name -> field of PodSample.redis
REDIS = {
    "cachedmodel_redis_used_memory_bytes": "usedMemoryBytes",
    "cachedmodel_redis_maxmemory_bytes": "maxMemoryBytes",
    "cachedmodel_redis_keys": "keys",
    "cachedmodel_redis_evicted_keys_total": "evictedKeys",
}
EPOCH = "cachedmodel_cache_epoch"  # the key epoch a pod serves (spec.cache.epoch once it rolled)
REDIS_UP = "cachedmodel_redis_up"
REDIS_SAMPLED = "cachedmodel_redis_sampled_timestamp_seconds"
WINDOW_SECONDS = 300.0  # the recent hit ratio covers at most this much time
REDIS_STALE_SECONDS = 90.0  # a Redis INFO sample older than this is reported stale (pods sample every 15 s)
MAX_SCRAPE_ERRORS = 5  # pods named in status.cache.scrapeErrors
MAX_PAGE_BYTES = 4 * 1024 * 1024  # a /metrics page larger than this is refused, not parsed
RATIO_PLACES = 4


@dataclass
class PodSample:
    """What one pod's /metrics says."""

    counters: dict[str, float] = field(default_factory=dict)
    redis: dict[str, float] = field(default_factory=dict)
    redis_up: bool = False
    redis_sampled_at: float | None = None  # unix time of the pod's last successful Redis INFO sample
    epoch: int | None = None  # the key epoch the pod serves (None: a service too old to say)


class ParseError(ValueError):
    """The page is not a Prometheus text exposition with the cache's series."""


def parse_page(text: str) -> PodSample:
    """The cache series of one /metrics page. A page without cachedmodel_cache_requests_total is not a
    cached model service (or its decorator is off): ParseError."""
    sample = PodSample(counters=dict.fromkeys(COUNTERS.values(), 0.0))
    seen = False
    up = []
    try:
        for family in text_string_to_metric_families(text):
            for item in family.samples:
                name, value = item.name, item.value
                if math.isnan(value):
                    continue
                if name in COUNTERS:
                    sample.counters[COUNTERS[name]] += value
                    seen = seen or name == "cachedmodel_cache_requests_total"
                elif name in REDIS:
                    sample.redis[REDIS[name]] = max(sample.redis.get(REDIS[name], 0.0), value)
                elif name == EPOCH:
                    sample.epoch = max(sample.epoch or 0, int(value))
                elif name == REDIS_UP:
                    up.append(value)
                elif name == REDIS_SAMPLED:
                    sample.redis_sampled_at = max(sample.redis_sampled_at or 0.0, value)
    except Exception as error:  # prometheus_client raises ValueError and friends on malformed text
        raise ParseError(f"not a Prometheus text page: {error}") from None
    if not seen:
        raise ParseError("no cachedmodel_cache_requests_total series (is spec.cache.enabled false, or is this "
                         "not the cached model service?)")
    sample.redis_up = bool(up) and all(value == 1 for value in up)
    return sample


def scrape_targets(pods: list[dict], port: int) -> tuple[list[tuple[str, str, str]], int]:
    """([(pod uid, pod name, ip:port)] of the Ready, running model pods, how many such pods there are).
    Pods being deleted, not ready or without an IP are not scraped (their figures would be about to vanish)."""
    targets = []
    for pod in pods or []:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            continue
        ip = status["podIP"]
        host = f"[{ip}]" if ":" in ip else ip
        targets.append((meta.get("uid") or meta.get("name"), meta.get("name"), f"{host}:{port}"))
    targets.sort(key=lambda target: target[1] or "")
    return targets, len(targets)


@dataclass
class Snapshot:
    """The per-pod counters of one scrape (the recent window's baselines), and the pods that were there
    but did not answer (their counts then are unknown: they stay out of a window starting there)."""

    at: float
    pods: dict[str, dict[str, float]]
    unknown: frozenset[str] = frozenset()


def totals(samples: dict[str, PodSample]) -> dict[str, int]:
    """The counters summed over the pods."""
    summed = dict.fromkeys(COUNTERS.values(), 0)
    for sample in samples.values():
        for key, value in sample.counters.items():
            summed[key] += int(value)
    return summed


def newest_redis(samples: dict[str, PodSample]) -> PodSample | None:
    """The pod whose Redis INFO sample is the newest (all pods see the same Redis); None if none has one."""
    found = [s for s in samples.values() if s.redis and s.redis_sampled_at is not None]
    return max(found, key=lambda s: s.redis_sampled_at) if found else None


def window_delta(baseline: Snapshot, current: dict[str, dict[str, float]]) -> dict[str, int]:
    """Counters gained since `baseline`, pod by pod: a pod absent from the baseline (new, or restarted under
    a new uid) counts from zero; a counter that went down is a reset (container restart): all of it is new;
    a pod that did not answer at the baseline is left out (what it had then is unknown)."""
    delta = dict.fromkeys(COUNTERS.values(), 0)
    for pod, counters in current.items():
        if pod in baseline.unknown:
            continue
        before = baseline.pods.get(pod) or {}
        reset = any(value < before.get(key, 0) for key, value in counters.items())
        for key, value in counters.items():
            delta[key] += int(value if reset else value - before.get(key, 0))
    return delta


def remember(history: list[Snapshot], snapshot: Snapshot, window: float = WINDOW_SECONDS) -> list[Snapshot]:
    """The history with `snapshot` added and those older than the window dropped (bounded: about
    window / scrape interval entries)."""
    return [s for s in history if s.at < snapshot.at and snapshot.at - s.at <= window] + [snapshot]


def baseline_of(history: list[Snapshot], at: float, window: float = WINDOW_SECONDS) -> Snapshot | None:
    """The oldest snapshot at most `window` seconds before `at` (and strictly before it)."""
    candidates = [s for s in history if 0 < at - s.at <= window]
    return min(candidates, key=lambda s: s.at) if candidates else None


def ratio(hits: int, requests: int) -> float | None:
    return round(hits / requests, RATIO_PLACES) if requests > 0 else None


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity(value: float | int) -> str:
    """Bytes as a short binary quantity (1.5Mi, 64Mi, 0) for the printer column."""
    value = float(value)
    for unit, size in (("Gi", 1024 ** 3), ("Mi", 1024 ** 2), ("Ki", 1024)):
        if value >= size:
            text = f"{value / size:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{int(value)}"


def memory_text(used: float | None, maximum: float | None) -> str | None:
    """`used/max` for kubectl get (`max` is "nolimit" when maxmemory is 0)."""
    if used is None:
        return None
    return f"{quantity(used)}/{quantity(maximum) if maximum else 'nolimit'}"


def cache_status(samples: dict[str, PodSample], errors: list[tuple[str, str]], ready_pods: int, now: float,
                 history: list[Snapshot], previous: dict | None = None, window: float = WINDOW_SECONDS,
                 unanswered: frozenset[str] = frozenset()) -> tuple[dict, list[Snapshot]]:
    """(status.cache, new history) from one round of scrapes.

    samples: pod uid -> parsed page of each pod scraped; errors: (pod name, message) of each refused or failed
    scrape (unanswered: their uids); ready_pods: the pods that should have answered. No pod answered: the
    previous figures are kept and
    marked stale (with the reason); a Redis sample older than REDIS_STALE_SECONDS (or Redis down for every pod)
    marks the Redis figures stale."""
    previous = dict(previous or {})
    scrape_errors = [{"pod": pod, "message": message[:300]} for pod, message in errors[:MAX_SCRAPE_ERRORS]]
    pods_text = f"{len(samples)}/{ready_pods}"
    if not samples:
        reason = ("no ready model pod to read /metrics from" if ready_pods == 0 else
                  f"no model pod answered /metrics ({len(errors)} failed)")
        stale = {key: value for key, value in previous.items()
                 if key not in ("scrapeErrors", "stale", "staleReason", "scrapedPods")}
        stale.update(stale=True, staleReason=reason, scrapedPods=pods_text)
        if scrape_errors:
            stale["scrapeErrors"] = scrape_errors
        return stale, history
    counters = totals(samples)
    status: dict = {"sampledAt": iso(now), "scrapedPods": pods_text, **counters}
    hit_ratio = ratio(counters["hits"], counters["requests"])
    if hit_ratio is not None:
        status["hitRatio"] = hit_ratio
    snapshot = Snapshot(now, {pod: dict(sample.counters) for pod, sample in samples.items()}, frozenset(unanswered))
    baseline = baseline_of(history, now, window)
    if baseline is not None:
        delta = window_delta(baseline, snapshot.pods)
        recent = {"windowSeconds": int(round(now - baseline.at)), "requests": delta["requests"],
                  "hits": delta["hits"], "misses": delta["misses"]}
        recent_ratio = ratio(delta["hits"], delta["requests"])
        if recent_ratio is not None:
            recent["hitRatio"] = recent_ratio
        status["recent"] = recent
    epochs = [sample.epoch for sample in samples.values() if sample.epoch is not None]
    if epochs:  # during a roll the oldest one still served: == spec.cache.epoch once every pod moved
        status["epoch"] = min(epochs)
    redis = newest_redis(samples)
    stale_reasons = []
    if redis is not None:
        for key in REDIS.values():
            if key in redis.redis:
                status[key] = int(redis.redis[key])
        status["redisSampledAt"] = iso(redis.redis_sampled_at)
        memory = memory_text(redis.redis.get("usedMemoryBytes"), redis.redis.get("maxMemoryBytes"))
        if memory:
            status["memory"] = memory
        age = now - redis.redis_sampled_at
        if age > REDIS_STALE_SECONDS:
            stale_reasons.append(f"the newest Redis INFO sample is {int(age)} s old")
    else:
        stale_reasons.append("no model pod has sampled Redis INFO yet")
    if not any(s.redis_up for s in samples.values()):
        stale_reasons.append("Redis INFO failed on every model pod (cachedmodel_redis_up 0)")
    status["stale"] = bool(stale_reasons)
    if stale_reasons:
        status["staleReason"] = "Redis figures: " + "; ".join(stale_reasons)
    if scrape_errors:
        status["scrapeErrors"] = scrape_errors
    return status, remember(history, snapshot, window)


def merge_patch(old: dict | None, new: dict | None) -> dict | None:
    """A JSON merge patch that turns `old` into `new` (None for every key `new` dropped; nested dicts too)."""
    if new is None:
        return None
    patch = dict(new)
    for key, value in (old or {}).items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            patch[key] = merge_patch(value, new[key])
    return patch
