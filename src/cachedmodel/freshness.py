"""Stale-while-revalidate entries: when an entry stops being fresh, and when to refresh it early.

With `stale_seconds`, a stored value carries a header in front of the codec's bytes:

    value = fresh_until (float64, Unix seconds) || compute (float32, seconds the model took) || codec bytes

and lives for ttl_seconds + stale_seconds in Redis. Until `fresh_until` a hit is fresh. After it, for
up to stale_seconds, the hit is still served at once while one caller refreshes the entry in the
background. With `early_refresh_beta` > 0 a hit may trigger that refresh before `fresh_until`, with a
probability that grows as expiry nears and with the model's cost. That is XFetch (Vattani, Chierichetti,
Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015):

    refresh when  now - compute * beta * ln(U)  >=  fresh_until,   U uniform in (0, 1]

beta = 1 is the paper's optimum; larger values refresh earlier. Keys of such entries live in their own
namespace, so they never mix with entries stored without a header.
"""
from __future__ import annotations

import math
import random
import struct

from cachedmodel.codecs import DecodeError

HEADER = struct.Struct(">df")


def wrap(payload: bytes, fresh_until: float, compute_seconds: float) -> bytes:
    return HEADER.pack(fresh_until, min(max(compute_seconds, 0.0), 3.0e38)) + payload


def unwrap(stored: bytes) -> tuple[bytes, float, float]:
    """(codec bytes, fresh_until, compute seconds); DecodeError for a value without a valid header."""
    if len(stored) <= HEADER.size:
        raise DecodeError("value is too short for a stale-while-revalidate header")
    fresh_until, compute = HEADER.unpack_from(stored)
    if not (math.isfinite(fresh_until) and math.isfinite(compute)) or compute < 0:
        raise DecodeError("value has an invalid stale-while-revalidate header")
    return stored[HEADER.size:], fresh_until, compute


def should_refresh(now: float, fresh_until: float, compute_seconds: float, beta: float,
                   uniform=random.random) -> bool:
    """Stale (past fresh_until), or picked for an early refresh by XFetch."""
    if now >= fresh_until:
        return True
    if beta <= 0 or compute_seconds <= 0:
        return False
    draw = uniform() or 1e-300  # U in (0, 1]: ln(U) <= 0, so the term pushes `now` forward
    return now - compute_seconds * beta * math.log(draw) >= fresh_until
