"""Stored values: every serder x compression round-trips bit-exactly; foreign bytes never decode."""
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachedmodel.codecs import DecodeError, ValueCodec

CHOICES = [(serder, compression) for serder in ("JSON", "MessagePack") for compression in (False, True)]
values = st.lists(st.one_of(st.floats(), st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), st.text(),
                            st.booleans(), st.none()), max_size=8)


def bits(value, serder="MessagePack"):
    if isinstance(value, float) and math.isnan(value) and serder == "JSON":
        return "nan"  # JSON has one NaN: the payload bits of an unusual NaN are not kept
    return struct.pack("<d", value) if isinstance(value, float) else value


@pytest.mark.parametrize("serder, compression", CHOICES)
@settings(max_examples=200, deadline=None)
@given(original=values)
def test_round_trip_is_exact(serder, compression, original):
    codec = ValueCodec(serder, compression)
    decoded = codec.decode(codec.encode(original))
    assert [type(v) for v in decoded] == [type(v) for v in original]
    assert [bits(v, serder) for v in decoded] == [bits(v, serder) for v in original]  # floats bit for bit


@pytest.mark.parametrize("serder, compression", CHOICES)
def test_special_floats(serder, compression):
    codec = ValueCodec(serder, compression)
    decoded = codec.decode(codec.encode([math.inf, -math.inf, 0.1 + 0.2, 5e-324, -0.0]))
    assert decoded[:2] == [math.inf, -math.inf] and decoded[2] == 0.1 + 0.2 and decoded[3] == 5e-324
    assert math.copysign(1, decoded[4]) == -1


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
