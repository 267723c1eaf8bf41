"""The in-process tier: a bounded LRU map whose entries also expire after a TTL, with lock-free reads.

Hot keys are answered without a network round trip. Entries are per process, so the TTL bounds how
long a process can serve a value that was removed from Redis (the shared tier stays the reference).

An entry keeps the stored bytes and, for output schemas whose fields are all immutable scalars
(`shareable_output`), the output built from them: a hit then hands out a shallow copy (`fresh_copy`,
a third of the cost of validating the bytes again), and the caller still owns what it gets.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from pydantic import BaseModel, RootModel

from cachedmodel.annotations import scalar_annotation


def shareable_output(output_type: type[BaseModel]) -> bool:
    """True when a shallow copy of an output is as good as a new one: every field an immutable scalar,
    no extra fields, no private attributes, not a RootModel."""
    return (not issubclass(output_type, RootModel) and output_type.model_config.get("extra") != "allow"
            and not output_type.__private_attributes__
            and all(scalar_annotation(field.annotation) for field in output_type.model_fields.values()))


_new = object.__new__
# BaseModel's own slots, set through their descriptors (cheaper than object.__setattr__ by name)
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def fresh_copy(output: BaseModel) -> BaseModel:
    """A new instance with the same field values (what BaseModel.__copy__ does for a shareable output,
    without its generality: half the time)."""
    copy = _new(type(output))
    copy.__dict__.update(output.__dict__)
    _set_fields_set(copy, set(output.__pydantic_fields_set__))
    _set_extra(copy, None)
    _set_private(copy, None)
    return copy


class LocalCache:
    """A bounded LRU map whose entries expire `ttl_seconds` after they were put.

    Reads take no lock: a hit is one OrderedDict lookup and one move_to_end, each a single C call (atomic
    under the GIL), so a read racing a write sees the entry before or after it, never a broken map.
    cachetools.TTLCache, this tier's first form, needs a lock around every read (a read relinks its LRU
    list in Python): that lock and relinking were a third of a local hit. Writes take the lock, so the
    bound holds. An expired entry reads as absent; a put replaces it, or the LRU order drops it."""

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if not ttl_seconds > 0 or ttl_seconds == float("inf"):
            raise ValueError("ttl_seconds must be a finite number > 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: collections.OrderedDict = collections.OrderedDict()  # key -> (expires at, value)
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """The value, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        try:
            self._entries.move_to_end(key)  # now the most recently used
        except KeyError:
            pass  # dropped by a concurrent write after our lookup: the value was still current
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        """Add or replace; the entry's TTL starts now and it becomes the most recently used."""
        entry = (self._clock() + self.ttl_seconds, value)
        with self._lock:
            entries = self._entries
            entries[key] = entry
            entries.move_to_end(key)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """Entries not yet expired."""
        with self._lock:
            while True:
                try:  # a lock-free read may reorder the map while we count: count again
                    now = self._clock()
                    return sum(1 for expires, _ in list(self._entries.values()) if expires > now)
                except RuntimeError:
                    continue
