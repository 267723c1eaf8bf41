"""Entries that decode but cannot be served (issue 9): NaN and +-Inf have no JSON form, so the HTTP
response encoder fails on them. Such a value is never stored, and one found in Redis (written by an
older version or another tool) is a corrupt entry: the model answers and the entry is rewritten."""
import asyncio
import json
import math

import cramjam
import msgpack
import pytest
import redis
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.codecs import ValueCodec
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, InsuranceOutput, sample_input

pytestmark = pytest.mark.integration
CHOICES = [(serder, compression) for serder in ("JSON", "MessagePack") for compression in (False, True)]
NON_FINITE = [math.nan, math.inf, -math.inf]


def errors(model, kind):
    return REGISTRY.get_sample_value("cachedmodel_cache_errors_total", {"model": model, "kind": kind}) or 0.0


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


class NonFiniteModel(InsuranceLikeModel):
    """Answers `value` as the charges (e.g. NaN), whatever the input."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = value

    def predict(self, data):
        super().predict(data)
        return InsuranceOutput(charges=self.value)


def planted(codec: ValueCodec, value: float) -> bytes:
    """An entry holding a non-finite float, as a writer that did not refuse it would store it."""
    if codec.serder == "JSON":
        raw = json.dumps([value], allow_nan=True).encode()
    else:
        raw = msgpack.packb([value], use_bin_type=True)
    if codec.use_compression:
        raw = bytes(cramjam.snappy.compress_raw(raw))
    return bytes([codec.marker]) + raw


@pytest.mark.parametrize("serder, compression", CHOICES)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_an_output_that_cannot_be_served_is_never_stored(redis_server, client, serder, compression, value):
    name = f"nonfinite_out_{serder}_{compression}_{value}"
    model = NonFiniteModel(value, qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, serder=serder, use_compression=compression,
                                      local_cache_size=8)
    for calls in (1, 2):
        output = decorator.predict(sample_input())
        assert type(output) is InsuranceOutput and repr(output.charges) == repr(value)  # the model's own answer
        assert model.calls == calls  # never a hit
    assert client.dbsize() == 0
    assert errors(name, "encode") == 2


@pytest.mark.parametrize("serder, compression", CHOICES)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_a_stored_non_finite_value_is_a_corrupt_entry_and_is_rewritten(redis_server, client, serder, compression,
                                                                        value):
    name = f"nonfinite_in_{serder}_{compression}_{value}"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, serder=serder, use_compression=compression)
    codec = ValueCodec(serder, compression)
    data = sample_input()
    key = decorator.cache_key(data)
    client.set(key, planted(codec, value))

    assert decorator.get_cached(data) is None
    assert asyncio.run(decorator.aget_cached(data)) is None
    expected = InsuranceLikeModel().predict(data)
    output = decorator.predict(data)
    assert output == expected and math.isfinite(output.charges) and model.calls == 1
    assert errors(name, "decode") == 3  # get_cached, aget_cached, predict
    assert client.get(key) == codec.encode([expected.charges])  # rewritten with the model's answer
    assert decorator.predict(data) == expected and model.calls == 1  # a hit again
