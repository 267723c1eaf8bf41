"""The in-process tier: a bounded LRU map whose entries also expire after a TTL (cachetools.TTLCache).

Hot keys are answered without a network round trip. Entries are per process, so the TTL bounds how
long a process can serve a value that was removed from Redis (the shared tier stays the reference).
cachetools caches are not thread-safe (a get reorders the LRU links), hence the lock.

An entry keeps the stored bytes and, for output schemas whose fields are all immutable scalars
(`shareable_output`), the output built from them: a hit then hands out a shallow copy (`fresh_copy`,
a third of the cost of validating the bytes again), and the caller still owns what it gets.
"""
from __future__ import annotations

import datetime
import decimal
import enum
import threading
import time
import types
import typing
import uuid
from typing import Any, Callable

from cachetools import TTLCache
from pydantic import BaseModel, RootModel

_IMMUTABLE_SCALARS = (bool, int, float, str, bytes, type(None), decimal.Decimal, datetime.date, datetime.time,
                      datetime.timedelta, uuid.UUID, enum.Enum)  # (datetime.datetime is a datetime.date)


def _immutable(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _immutable(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_immutable(argument) for argument in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, _IMMUTABLE_SCALARS)


def shareable_output(output_type: type[BaseModel]) -> bool:
    """True when a shallow copy of an output is as good as a new one: every field an immutable scalar,
    no extra fields, no private attributes, not a RootModel."""
    return (not issubclass(output_type, RootModel) and output_type.model_config.get("extra") != "allow"
            and not output_type.__private_attributes__
            and all(_immutable(field.annotation) for field in output_type.model_fields.values()))


_new = object.__new__
_set = object.__setattr__


def fresh_copy(output: BaseModel) -> BaseModel:
    """A new instance with the same field values (what BaseModel.__copy__ does, without its generality)."""
    copy = _new(type(output))
    _set(copy, "__dict__", output.__dict__.copy())
    _set(copy, "__pydantic_extra__", None)
    _set(copy, "__pydantic_fields_set__", set(output.__pydantic_fields_set__))
    _set(copy, "__pydantic_private__", None)
    return copy


class LocalCache:
    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be > 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: TTLCache = TTLCache(maxsize=max_entries, ttl=ttl_seconds, timer=clock)
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        """The value, or None when absent or expired."""
        with self._lock:
            try:  # one lookup: TTLCache.get() tests `in` first, then indexes (3x the time of a hit)
                return self._entries[key]  # expired entries raise KeyError too (dropped on the next write)
            except KeyError:
                return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._entries[key] = value  # also refreshes the TTL and makes it the most recently used

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
