"""Stored values: one marker byte, then the output fields' values as a JSON or MessagePack array.

    value = marker || payload          marker = 0x10 | compressed << 1 | messagepack
    payload = [optionally snappy(raw)] of [v1, v2, ...] in the output schema's field order

Only the values are stored (the field names are known from the output schema), which keeps entries
small. The marker makes a value written with other options, by another format version or by
something else entirely fail to decode (counted, then replaced) instead of being misread.
Never pickle: JSON and MessagePack cannot run code when decoded. Floats round-trip bit-exactly
(MessagePack float64; JSON via repr, including inf and nan).
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
from pydantic import BaseModel

VALUE_FORMAT = 1
_MARKER_BASE = 0x10 * VALUE_FORMAT


class DecodeError(ValueError):
    """A stored value is not one this codec wrote."""


def _plain(value: Any) -> Any:
    """JSON/MessagePack have no type for these; store their usual JSON form, the schema restores them."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


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
            self._dumps = functools.partial(msgpack.packb, default=_plain, use_bin_type=True, use_single_float=False)
            self._loads = lambda raw: msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)
        else:
            encoder = json.JSONEncoder(default=_plain, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
            self._dumps = lambda values: encoder.encode(values).encode()
            self._loads = json.loads

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
