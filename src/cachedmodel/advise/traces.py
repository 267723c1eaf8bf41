"""Workloads as traces (pure apart from reading files): request order as small integer ids, plus the
Redis key of each distinct id, shaped like the decorator's ([prefix ":"] + 22 base64url characters of a
blake2b-128 digest, see cachedmodel.keys), so Redis stores keys of the real length and encoding."""
from __future__ import annotations

import base64
import hashlib
import itertools
import random
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path

SYNTHETIC_PREFIX = "advise"
MAX_LINE = 1024  # a key or request identifier; longer lines are not identifiers
# what the decorator writes: an optional prefix (any characters but newline) + ":" + 22 base64url characters
_KEY_SHAPE = re.compile(rb"^(?:[^\r\n]*:)?[A-Za-z0-9_-]{22}$")


class TraceError(ValueError):
    """A workload that cannot be read; the message names the file and line."""


@dataclass
class Trace:
    ids: array                      # request order: ids[i] is the distinct key of request i
    keys: list[bytes]               # keys[id]: the Redis key of that id
    source: str                     # what the trace is, for the report
    value_bytes: int | None = None  # measured size of a stored value (offline mode), else None
    model_latency_seconds: float | None = None  # measured model time per prediction (offline mode)
    notes: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.ids)

    @property
    def distinct(self) -> int:
        return len(self.keys)


def shaped_key(identifier: bytes, prefix: str = SYNTHETIC_PREFIX) -> bytes:
    """An identifier as a decorator-shaped key: prefix:base64url(blake2b-128(identifier))."""
    digest = hashlib.blake2b(identifier, digest_size=16).digest()
    return f"{prefix}:".encode() + base64.urlsafe_b64encode(digest)[:22]


class TraceBuilder:
    """Assigns ids to keys in order of first appearance."""

    def __init__(self):
        self.ids = array("I")
        self.keys: list[bytes] = []
        self._index: dict[bytes, int] = {}

    def add(self, key: bytes) -> None:
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.keys)
            self.keys.append(key)
        self.ids.append(index)

    @property
    def distinct_count(self) -> int:
        return len(self.keys)

    def build(self, source: str, **kwargs) -> Trace:
        if not self.ids:
            raise TraceError(f"{source}: no requests")
        return Trace(self.ids, self.keys, source, **kwargs)


def read_keys(path: str | Path) -> Trace:
    """One cache key (or any request identifier) per line, in request order; blank lines are skipped.
    Lines shaped like the decorator's keys (e.g. written by CACHEDMODEL_KEY_TRACE) are used as they are;
    any other identifier is turned into a decorator-shaped key of its digest."""
    path = Path(path)
    builder = TraceBuilder()
    try:
        with open(path, "rb") as lines:
            for number, line in enumerate(lines, 1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if len(line) > MAX_LINE:
                    raise TraceError(f"{path}:{number}: a line of {len(line)} bytes is not a key "
                                     f"(at most {MAX_LINE}; one key per line)")
                if b"\0" in line:
                    raise TraceError(f"{path}:{number}: a NUL byte: not a text file of keys")
                builder.add(line if _KEY_SHAPE.match(line) else shaped_key(line))
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror or error}") from None
    return builder.build(f"keys from {path.name}")


def zipf(s: float, distinct: int, requests: int, seed: int = 0) -> Trace:
    """`requests` draws from `distinct` keys, key of rank r with probability proportional to 1 / r**s
    (s = 0: uniform). Seeded: the same arguments give the same trace."""
    if not s >= 0:
        raise TraceError(f"--zipf must be a number >= 0, got {s}")
    if distinct < 1 or requests < 1:
        raise TraceError("--distinct and --requests must be at least 1")
    weights = itertools.accumulate(1.0 / (rank ** s) for rank in range(1, distinct + 1))
    drawn = random.Random(seed).choices(range(distinct), cum_weights=list(weights), k=requests)
    # ids by first appearance, as for recorded traces (keys never drawn get none)
    builder = TraceBuilder()
    names = {}
    for rank in drawn:
        key = names.get(rank)
        if key is None:
            key = names[rank] = shaped_key(b"%d" % rank)
        builder.add(key)
    return builder.build(f"zipf s={s:g} over {distinct:,} keys, seed {seed}")
