"""Cache keys: a blake2b digest of a canonical MessagePack encoding of the keyed input fields.

    key = [<prefix> ":"] base64url(blake2b-128(namespace || body))     (22 characters + prefix)

- namespace: MessagePack of ["cachedmodel", KEY_FORMAT, model qualified name, model version, prefix,
  hashing field names, reduced precision fields and places, serder, compression, value format, output
  field names (+ "stale-while-revalidate" with stale_seconds, + ["epoch", n] for an epoch n > 0)].
  Anything that changes the keyed input or the stored bytes is in it, so changing it changes every key.
- body: MessagePack array of the hashing fields' values, in sorted field-name order (the names are in
  the namespace, in the same order, so each value is bound to its field). MessagePack
  keeps bool, int, float (always 64-bit), str, bytes, None, lists and maps apart; maps are written
  with their keys in canonical order (equal dicts give one key whatever their insertion order); other values are
  tagged with an ExtType code (enum, big int, datetime/date/time, Decimal, UUID, set, nested model),
  so `True`, `1`, `1.0` and `"1"` never collide.
- extra fields: for an input schema with `extra="allow"` (and no explicit hashing_fields) the
  undeclared fields an input carries are part of it, so a non-empty `__pydantic_extra__` is appended
  to the body as one more value (a map, in canonical key order); a nested model with extras is
  tagged [fields, extras] under its own ExtType code. Inputs without extras keep the key they always
  had (the body is one value shorter), so keys of ordinary schemas did not change (no KEY_FORMAT bump).

Nothing here depends on the process: no `hash()`, no dict order other than sorted, the same bytes on
every machine and Python version.
"""
from __future__ import annotations

import binascii
import datetime
import decimal
import enum
import hashlib
import operator
import threading
import uuid
from typing import Any, Iterable

import msgpack
from pydantic import BaseModel

KEY_FORMAT = 2  # 2: output field names joined the namespace
DIGEST_SIZE = 16

# ExtType codes of the canonical encoding (never renumber: keys would change)
_EXT_ENUM, _EXT_BIG_INT, _EXT_DATETIME, _EXT_DATE, _EXT_TIME = 1, 2, 3, 4, 5
_EXT_DECIMAL, _EXT_UUID, _EXT_SET, _EXT_MODEL, _EXT_TIMEDELTA = 6, 7, 8, 9, 10
_EXT_MODEL_WITH_EXTRA = 11


def _canonical_default(value: Any) -> Any:
    """Encode the values MessagePack has no type for, each under its own ExtType code."""
    if isinstance(value, enum.Enum):
        return msgpack.ExtType(_EXT_ENUM, canonical_bytes(value.value))
    if isinstance(value, int):  # only integers outside MessagePack's 64-bit range get here
        return msgpack.ExtType(_EXT_BIG_INT, str(value).encode())
    if isinstance(value, datetime.datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, datetime.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, datetime.time):
        return msgpack.ExtType(_EXT_TIME, value.isoformat().encode())
    if isinstance(value, datetime.timedelta):
        return msgpack.ExtType(_EXT_TIMEDELTA, canonical_bytes([value.days, value.seconds, value.microseconds]))
    if isinstance(value, decimal.Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(value).encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    if isinstance(value, (set, frozenset)):
        return msgpack.ExtType(_EXT_SET, b"".join(sorted(canonical_bytes(item) for item in value)))
    if isinstance(value, BaseModel):
        fields = dict(sorted(value.__dict__.items()))
        extra = value.__pydantic_extra__
        if extra:  # extra="allow": its undeclared fields are part of its value
            return msgpack.ExtType(_EXT_MODEL_WITH_EXTRA, canonical_bytes([fields, extra]))
        return msgpack.ExtType(_EXT_MODEL, canonical_bytes(fields))
    raise TypeError(f"cannot build a cache key from a value of type {type(value).__name__}")


_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_LEAF_TYPES = set(_PLAIN)  # types seen in keyed values that are not containers (grows by a few types)


def _sorted_maps(value: Any) -> Any:
    """Dicts (at any depth) re-built with their keys in canonical-bytes order: MessagePack writes a map
    in insertion order, and equal dicts must give equal keys (a JSON body may list its keys in any order)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        return {key: _sorted_maps(item) for key, item in sorted(value.items(), key=lambda kv: canonical_bytes(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_sorted_maps(item) for item in value]
    return value  # sets and nested models are canonicalised by _canonical_default


def _widen_big_ints(value: Any) -> Any:
    """Replace integers outside MessagePack's 64-bit range by a tagged decimal string (rare path)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2 ** 63) <= value < 2 ** 64:
        return msgpack.ExtType(_EXT_BIG_INT, str(value).encode())
    if isinstance(value, dict):
        return {key: _widen_big_ints(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_widen_big_ints(item) for item in value]
    return value


_packer_options = dict(use_bin_type=True, use_single_float=False, strict_types=False, datetime=False)
_thread_state = threading.local()


def _packer() -> msgpack.Packer:
    """A Packer per thread: Packer.pack is 3x cheaper than packb, but an instance is not thread-safe."""
    try:
        return _thread_state.packer
    except AttributeError:
        _thread_state.packer = msgpack.Packer(default=_canonical_default, autoreset=True, **_packer_options)
        return _thread_state.packer


def canonical_bytes(value: Any) -> bytes:
    """The canonical MessagePack encoding of a value (see the module docstring)."""
    value = _sorted_maps(value)
    try:
        return msgpack.packb(value, default=_canonical_default, **_packer_options)
    except OverflowError:
        return msgpack.packb(_widen_big_ints(value), default=_canonical_default, **_packer_options)


def namespace_bytes(*, qualified_name: str, version: str, prefix: str, hashing_fields: Iterable[str],
                    reduced_precision_fields: Iterable[str], number_of_places: int | None, serder: str,
                    use_compression: bool, value_format: int, output_fields: Iterable[str] = (),
                    stale_header: bool = False, epoch: int = 0) -> bytes:
    """Everything besides the input that a key depends on, canonically encoded. The output field names
    are in their schema order: values are stored as an array in that order, so a reordered or renamed
    output schema must never read entries written for the old one. Entries with a stale-while-revalidate
    header (cachedmodel.freshness) get a namespace of their own; other keys are unchanged by it. So do the
    keys of an epoch above 0 (option `epoch`: bumping it invalidates every entry without touching Redis);
    epoch 0 keeps the keys every earlier version wrote."""
    parts = ["cachedmodel", KEY_FORMAT, str(qualified_name), str(version), prefix,
             sorted(hashing_fields), sorted(reduced_precision_fields), number_of_places,
             serder, bool(use_compression), value_format, list(output_fields)]
    if stale_header:
        parts.append("stale-while-revalidate")
    if epoch:
        parts.append(["epoch", int(epoch)])
    return canonical_bytes(parts)


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_B64_LENGTH = 22  # base64 of 16 bytes without the "==" padding


class KeyBuilder:
    """Builds keys for one model + options. Hot path: the namespace is hashed once, each key copies
    that hash state and adds the MessagePack array of the hashing fields' values in sorted field order
    (the sorted names are part of the namespace, so each value is bound to its field's name).
    `extras=True` (extra="allow" inputs) appends the input's non-empty extra fields as one more map.
    `scalars=True` (every hashing field annotated with scalars, cachedmodel.annotations): no value can
    be a container holding a dict to sort, so values are not inspected (a third of a known key's cost;
    a dict forced into such a field without validation keeps its insertion order: a miss, never a
    wrong key)."""

    __slots__ = ("fields", "extras", "_inspect", "_getter", "_single", "_hasher", "_key_prefix", "_known")

    # Hot inputs come back again and again: the key of a body is a pure function of its bytes, so small
    # bodies' keys are remembered (a dict lookup instead of blake2b + base64, half a key's cost). Bounded:
    # when full, the map starts over (cheaper per key than LRU bookkeeping; hot bodies return at once).
    KNOWN_BODY_BYTES = 256
    KNOWN_MAX = 4096

    def __init__(self, namespace: bytes, prefix: str, hashing_fields: Iterable[str], extras: bool = False,
                 scalars: bool = False):
        self.fields = tuple(sorted(hashing_fields))
        self.extras = bool(extras)
        self._inspect = self.extras or not scalars
        if not self.fields:
            raise ValueError("a key needs at least one field")
        self._getter = operator.itemgetter(*self.fields)
        self._single = len(self.fields) == 1
        self._hasher = hashlib.blake2b(namespace, digest_size=DIGEST_SIZE)
        self._key_prefix = f"{prefix}:".encode() if prefix else b""
        self._known: dict[bytes, bytes] = {}

    def key(self, data: BaseModel) -> bytes:
        """The key (bytes) of an input model instance (pydantic v2 keeps field values in __dict__)."""
        values = self._getter(data.__dict__)
        if self._single:
            values = (values,)
        if self.extras:
            extra = data.__pydantic_extra__
            if extra:
                values = (*values, extra)  # a dict: canonicalised by the container path below
        if self._inspect and not _LEAF_TYPES.issuperset(map(type, values)):  # (one C call if all leaves)
            for value in values:
                kind = type(value)
                if kind not in _LEAF_TYPES:
                    if isinstance(value, (dict, list, tuple)):
                        values = _sorted_maps(values)  # rare path: containers may hold dicts
                        break
                    _LEAF_TYPES.add(kind)  # enums, datetimes...: never walked again
        try:
            try:
                packer = _thread_state.packer
            except AttributeError:
                packer = _packer()
            body = packer.pack(values)
        except OverflowError:
            body = canonical_bytes(_widen_big_ints(list(values)))
        known = self._known
        key = known.get(body)
        if key is not None:
            return key
        hasher = self._hasher.copy()
        hasher.update(body)
        key = self._key_prefix + binascii.b2a_base64(hasher.digest(), newline=False).translate(_URLSAFE)[:_B64_LENGTH]
        if len(body) <= self.KNOWN_BODY_BYTES:
            if len(known) >= self.KNOWN_MAX:
                known.clear()
            known[body] = key
        return key
