"""Exact cache simulations at a fixed entry capacity (pure): the ideal Redis's sampled eviction approximates.

- LRU: on a miss with the cache full, evict the entry whose last request is the oldest.
- LFU: evict the entry with the fewest requests since it entered the cache (its count starts at 1 and
  is forgotten when it is evicted, like Redis's per-key counter); ties go to the least recently used.
- The compulsory-miss bound: every distinct key's first request misses whatever the size, so no
  cache hits more than 1 - distinct / requests.
Both simulators are O(1) per request (OrderedDicts), a few seconds for a million requests.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence


def compulsory_miss_bound(ids: Sequence[int]) -> float:
    """The highest hit ratio any cache can reach on this trace: 1 - distinct / requests."""
    if not ids:
        return 0.0
    return (len(ids) - len(set(ids))) / len(ids)  # hits / requests at best: the same division as a hit ratio


def lru_hits(ids: Iterable[int], capacity: int) -> int:
    """Hits of an exact LRU cache holding at most `capacity` entries."""
    if capacity <= 0:
        return 0
    cache: OrderedDict = OrderedDict()
    move, pop = cache.move_to_end, cache.popitem
    hits = 0
    for key in ids:
        if key in cache:
            move(key)
            hits += 1
        else:
            cache[key] = None
            if len(cache) > capacity:
                pop(last=False)
    return hits


def lfu_hits(ids: Iterable[int], capacity: int) -> int:
    """Hits of an exact LFU cache (in-cache counts, least recently used among equal counts)."""
    if capacity <= 0:
        return 0
    count: dict[int, int] = {}
    buckets: dict[int, OrderedDict] = {}  # count -> keys with that count, least recently used first
    lowest = 0
    hits = 0
    for key in ids:
        seen = count.get(key)
        if seen is not None:
            hits += 1
            bucket = buckets[seen]
            del bucket[key]
            if not bucket:
                del buckets[seen]
                if lowest == seen:
                    lowest = seen + 1
            count[key] = seen + 1
            buckets.setdefault(seen + 1, OrderedDict())[key] = None
            continue
        if len(count) >= capacity:
            bucket = buckets[lowest]
            victim, _ = bucket.popitem(last=False)
            if not bucket:
                del buckets[lowest]
            del count[victim]
        count[key] = 1
        buckets.setdefault(1, OrderedDict())[key] = None
        lowest = 1
    return hits
