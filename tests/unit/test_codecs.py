"""Stored values: every serder x compression round-trips bit-exactly; foreign bytes never decode;
NaN and +-Inf (which no JSON response can carry) are refused both ways."""
import json
import math
import struct

import msgpack

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachedmodel.codecs import DecodeError, ValueCodec

CHOICES = [(serder, compression) for serder in ("JSON", "MessagePack") for compression in (False, True)]
values = st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), st.text(),
                            st.booleans(), st.none()), max_size=8)


def bits(value):
    return struct.pack("<d", value) if isinstance(value, float) else value


@pytest.mark.parametrize("serder, compression", CHOICES)
@settings(max_examples=200, deadline=None)
@given(original=values)
def test_round_trip_is_exact(serder, compression, original):
    codec = ValueCodec(serder, compression)
    decoded = codec.decode(codec.encode(original))
    assert [type(v) for v in decoded] == [type(v) for v in original]
    assert [bits(v) for v in decoded] == [bits(v) for v in original]  # floats bit for bit


@pytest.mark.parametrize("serder, compression", CHOICES)
def test_special_floats(serder, compression):
    codec = ValueCodec(serder, compression)
    decoded = codec.decode(codec.encode([0.1 + 0.2, 5e-324, -0.0, 1.7976931348623157e308]))
    assert decoded[:2] == [0.1 + 0.2, 5e-324] and decoded[3] == 1.7976931348623157e308
    assert math.copysign(1, decoded[2]) == -1


NON_FINITE = [[math.nan], [math.inf], [-math.inf], [1.0, [2.0, {"k": math.nan}]], [{"k": [math.inf]}]]


@pytest.mark.parametrize("serder, compression", CHOICES)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_non_finite_floats_are_never_encoded(serder, compression, value):
    """A JSON response cannot carry NaN/Inf (starlette: allow_nan=False), so such an entry could never be served."""
    with pytest.raises(ValueError):
        ValueCodec(serder, compression).encode(value)


def _raw(serder, values) -> bytes:
    """A payload written by something that did not refuse NaN/Inf (an older version, another tool)."""
    if serder == "JSON":
        return json.dumps(values, allow_nan=True).encode()
    return msgpack.packb(values, use_bin_type=True)


@pytest.mark.parametrize("serder, compression", CHOICES)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_stored_non_finite_floats_are_decode_errors(serder, compression, value):
    import cramjam

    codec = ValueCodec(serder, compression)
    raw = _raw(serder, value)
    if compression:
        raw = bytes(cramjam.snappy.compress_raw(raw))
    with pytest.raises(DecodeError, match="non-finite"):
        codec.decode(bytes([codec.marker]) + raw)


@pytest.mark.parametrize("payload", [b"[1e400]", b"[-1e999, 1.0]", b"[{\"k\": [1e400]}]"])
def test_json_overflowing_to_inf_is_a_decode_error(payload):
    """json parses 1e400 as inf without asking parse_constant."""
    codec = ValueCodec("JSON")
    with pytest.raises(DecodeError, match="non-finite"):
        codec.decode(bytes([codec.marker]) + payload)


def test_values_pydantic_knows_are_stored_in_their_json_form():
    import datetime

    from pydantic import BaseModel, Field

    class Inner(BaseModel):
        unit_price: float = Field(alias="unitPrice")

    codec = ValueCodec("JSON")
    assert codec.decode(codec.encode([datetime.timedelta(days=1, seconds=2), Inner(unitPrice=1.5)])) == [
        "P1DT2S", {"unit_price": 1.5}]  # nested models by field name, never by alias
    with pytest.raises(TypeError, match="object"):
        codec.encode([object()])


@pytest.mark.parametrize("serder, compression", CHOICES)
def test_values_of_other_options_or_garbage_are_decode_errors(serder, compression):
    codec = ValueCodec(serder, compression)
    for other_serder, other_compression in CHOICES:
        if (other_serder, other_compression) != (serder, compression):
            with pytest.raises(DecodeError, match="marker"):
                codec.decode(ValueCodec(other_serder, other_compression).encode([1.5]))
    for garbage in (b"", b"garbage", b"\x80\x04\x95pickle", bytes([codec.marker]) + b"\xff\xfe\x00not-a-value"):
        with pytest.raises(DecodeError):
            codec.decode(garbage)


def test_entries_are_compact():
    assert len(ValueCodec("MessagePack").encode([14355.723333333333])) == 11  # marker + array + float64
    assert ValueCodec("JSON").encode([1.5, "a"]) == b"\x10[1.5,\"a\"]"


def test_unknown_serder_is_rejected():
    with pytest.raises(ValueError, match="serder"):
        ValueCodec("pickle")
