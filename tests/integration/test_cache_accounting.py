"""Exact accounting: every prediction the cache sees is counted once in cachedmodel_cache_requests_total,
and hits (every tier) + misses + bypasses (by reason) equal it on every path and under Redis faults.
(Triton's users report hit and miss counts that do not add up to the requests: triton#5384.)"""
import asyncio
from typing import Any

import pytest
from ml_base.ml_model import MLModel
from prometheus_client import REGISTRY
from pydantic import BaseModel

from cachedmodel import RedisCachingDecorator
from cachedmodel.metrics import BYPASS_REASONS
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input
from cachedmodel.testing.redis_server import RedisServer

pytestmark = pytest.mark.integration


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def accounting(model: str) -> dict:
    counts = {"requests": value("cachedmodel_cache_requests_total", model=model),
              "hits": sum(value("cachedmodel_cache_hits_total", model=model, tier=tier) for tier in ("redis", "local")),
              "misses": value("cachedmodel_cache_misses_total", model=model)}
    counts.update({reason: value("cachedmodel_cache_bypass_total", model=model, reason=reason)
                   for reason in BYPASS_REASONS})
    return counts


def assert_balanced(model: str) -> dict:
    counts = accounting(model)
    assert counts["requests"] == counts["hits"] + counts["misses"] + sum(counts[r] for r in BYPASS_REASONS), counts
    return counts


class AnyInput(BaseModel):
    payload: Any = None


class AnyOutput(BaseModel):
    echo: str


class AnyModel(MLModel):
    display_name = description = "any"
    input_schema, output_schema = AnyInput, AnyOutput
    qualified_name = "accounting_any_model"
    version = "1"

    def __init__(self):
        pass

    def predict(self, data):
        return AnyOutput(echo=type(data.payload).__name__)


def test_every_path_balances():
    name = "accounting_paths_model"
    model = InsuranceLikeModel(qualified_name=name)
    with RedisServer() as server:
        decorator = RedisCachingDecorator(model, url=server.url, local_cache_size=8, circuit_breaker_failures=1,
                                          circuit_breaker_reset_seconds=30)
        first, second = sample_input(age=30), sample_input(age=31)
        decorator.predict(first)                                   # miss
        decorator.predict(first)                                   # local hit
        decorator.predict(second)                                  # miss
        decorator._local.clear()
        decorator.predict(second)                                  # redis hit
        with pytest.raises(AttributeError):  # invalid input: the model gets it as it came, and fails its own way
            decorator.predict({"age": 1})
        decorator.close()
    counts = assert_balanced(name)
    assert (counts["misses"], counts["hits"], counts["invalid_input"]) == (2, 2, 1), counts
    # the model's time on the calls the cache let through (here the 2 misses): hits x mean = time saved
    assert value("cachedmodel_model_seconds_count", model=name) == 2
    assert value("cachedmodel_model_seconds_sum", model=name) > 0


def test_faults_balance_with_their_reasons():
    name = "accounting_faults_model"
    model = InsuranceLikeModel(qualified_name=name)
    server = RedisServer().start()
    decorator = RedisCachingDecorator(model, url=server.url, circuit_breaker_failures=2,
                                      circuit_breaker_reset_seconds=30)
    try:
        inputs = [sample_input(age=20 + i) for i in range(4)]
        [decorator.predict(data) for data in inputs]               # 4 misses
        [decorator.predict(data) for data in inputs]               # 4 hits
        server.kill()
        [decorator.predict(data) for data in inputs]               # 2 redis errors, then the circuit opens: 2 skipped
        counts = assert_balanced(name)
        assert (counts["misses"], counts["hits"], counts["redis_error"], counts["circuit_open"]) == (4, 4, 2, 2), counts

        async def fast_path():  # the service's path: hit-only lookup, then the route's predict on a miss
            try:
                for data in inputs:
                    if await decorator.aget_cached(data, remember_miss=True) is None:
                        decorator.predict(data)
            finally:
                await decorator.aclose()
        asyncio.run(fast_path())
        counts = assert_balanced(name)
        assert counts["circuit_open"] == 6, counts                 # counted once each, not once per lookup
    finally:
        decorator.close()
        server.stop()


def test_unkeyable_input_is_a_bypass():
    with RedisServer() as server:
        decorator = RedisCachingDecorator(AnyModel(), url=server.url)
        assert decorator.predict(AnyInput(payload=object())).echo == "object"
        assert decorator.predict(AnyInput(payload=3)).echo == "int"   # a miss
        assert decorator.predict(AnyInput(payload=3)).echo == "int"   # a hit
        decorator.close()
    counts = assert_balanced("accounting_any_model")
    assert (counts["unkeyable"], counts["misses"], counts["hits"]) == (1, 1, 1), counts
