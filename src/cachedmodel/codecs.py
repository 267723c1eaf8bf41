"""Stored values: one marker byte, then the output fields' values as a JSON or MessagePack array.

    value = marker || payload          marker = 0x10 | compressed << 1 | messagepack
    payload = [optionally snappy(raw)] of [v1, v2, ...] in the output schema's field order

Only the values are stored (the field names are known from the output schema), which keeps entries
small. The marker makes a value written with other options, by another format version or by
something else entirely fail to decode (counted, then replaced) instead of being misread.
Never pickle: JSON and MessagePack cannot run code when decoded. Finite floats round-trip
bit-exactly (MessagePack float64; JSON via repr). NaN and +-Inf are refused both ways (encode raises
ValueError, decode raises DecodeError): a JSON response cannot carry them, so an entry holding one
could never be served (issue 9).

Types JSON/MessagePack lack are stored in their JSON form (enum -> value, datetime -> ISO 8601,
Decimal/UUID -> str, tuple/set -> list, nested model -> its raw field values keyed by field NAME (never
by alias; extras included), nested RootModel -> its root; anything else pydantic knows ->
pydantic_core.to_jsonable_python); the output schema restores them.
"""
from __future__ import annotations

import datetime
import decimal
import enum
import functools
import json
import uuid
from typing import Any

import cramjam
import msgpack
from pydantic import BaseModel, RootModel
from pydantic_core import to_jsonable_python

VALUE_FORMAT = 1
_MARKER_BASE = 0x10 * VALUE_FORMAT


class DecodeError(ValueError):
    """A stored value is not one this codec wrote."""


def _plain(value: Any) -> Any:
    """JSON/MessagePack have no type for these; store their usual JSON form, the schema restores them."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        # its raw field values by field NAME, as the decorator stores an output's (never model_dump:
        # aliases may differ per direction, serializers and exclude=True change or drop values);
        # computed fields are derived, not stored; a RootModel validates from its root value
        if isinstance(value, RootModel):
            return value.__dict__["root"]
        extra = value.__pydantic_extra__
        return {**extra, **value.__dict__} if extra else value.__dict__
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    try:  # timedelta, paths, IP addresses...: pydantic's JSON form, which its validators accept back
        return to_jsonable_python(value, round_trip=True)
    except Exception:  # noqa: BLE001 - anything pydantic cannot serialise either
        raise TypeError(f"cannot store a value of type {type(value).__name__}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite float {name} in a stored value")


def _check_finite(values: Any) -> None:
    """Raise ValueError if a float anywhere in decoded MessagePack data is NaN or +-Inf."""
    for value in values:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # nan - nan and inf - inf are nan
                raise ValueError(f"non-finite float {value!r} in a stored value")
        elif kind is list:
            _check_finite(value)
        elif kind is dict:
            _check_finite(value.keys())
            _check_finite(value.values())


class ValueCodec:
    """Encodes/decodes the list of an output's field values for one serder × compression choice."""

    __slots__ = ("serder", "use_compression", "marker", "_marker_byte", "_dumps", "_loads")

    def __init__(self, serder: str = "MessagePack", use_compression: bool = False):
        if serder not in ("JSON", "MessagePack"):
            raise ValueError(f"unknown serder {serder!r}")
        self.serder = serder
        self.use_compression = bool(use_compression)
        self.marker = _MARKER_BASE | (2 if use_compression else 0) | (1 if serder == "MessagePack" else 0)
        self._marker_byte = bytes([self.marker])
        if serder == "MessagePack":
            # packb per call: a shared msgpack.Packer is not thread-safe
            pack = functools.partial(msgpack.packb, default=_plain, use_bin_type=True, use_single_float=False)

            def dumps(values: list) -> bytes:
                raw = pack(values)
                _check_finite(msgpack.unpackb(raw, raw=False, strict_map_key=False))  # after _plain's conversions
                return raw

            def loads(raw: bytes) -> Any:
                values = msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)
                if type(values) is list:
                    _check_finite(values)
                return values
            self._dumps, self._loads = dumps, loads
        else:
            encoder = json.JSONEncoder(default=_plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            decoder = json.JSONDecoder(parse_constant=_refuse_constant)  # once: json.loads(**kw) builds one per call

            def loads(raw: bytes) -> Any:
                values = decoder.decode(raw.decode())
                if type(values) is list:
                    _check_finite(values)  # "1e400" parses as inf without parse_constant
                return values
            self._dumps, self._loads = (lambda values: encoder.encode(values).encode()), loads

    def encode(self, values: list) -> bytes:
        raw = self._dumps(values)
        if self.use_compression:
            raw = bytes(cramjam.snappy.compress_raw(raw))
        return self._marker_byte + raw

    def decode(self, stored: bytes) -> list:
        if not stored or stored[0] != self.marker:
            raise DecodeError(f"value has marker {stored[:1]!r}, expected {self._marker_byte!r}")
        raw = stored[1:]
        try:
            if self.use_compression:
                raw = bytes(cramjam.snappy.decompress_raw(raw))
            values = self._loads(raw)
        except Exception as error:  # noqa: BLE001 - any malformed payload is a decode error
            raise DecodeError(f"value does not decode as {self.serder}: {error}") from None
        if not isinstance(values, list):
            raise DecodeError(f"value decodes to {type(values).__name__}, expected a list")
        return values
