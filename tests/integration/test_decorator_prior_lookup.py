"""The per-request lookup hint between the HTTP fast path and the route, at the decorator level, with a
real redis-server: aget_cached(remember_miss=True) lets the predict() that follows in the same context
skip its own Redis GET, once, for the same key only; other contexts never see it."""
from __future__ import annotations

import asyncio
import contextvars

import pytest
import redis

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input

pytestmark = pytest.mark.integration


def gets_and_sets(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats")
    return stats.get("cmdstat_get", {}).get("calls", 0), stats.get("cmdstat_set", {}).get("calls", 0)


@pytest.fixture
def setup(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    decorator = RedisCachingDecorator(InsuranceLikeModel(), url=redis_server.url, single_flight=False)
    yield decorator, client
    decorator.close()


def test_a_remembered_miss_spares_the_next_predict_its_get_once(setup):
    decorator, client = setup
    data = sample_input(age=30)

    async def request():
        assert await decorator.aget_cached(data, remember_miss=True) is None
        client.config_resetstat()
        first = decorator.predict(data)            # miss taken from the hint: no GET, one SET
        after_first = gets_and_sets(client)
        again = decorator.predict(sample_input(age=30))  # hint used up: a normal lookup (a hit now)
        await decorator.aclose()
        return first, after_first, again

    first, after_first, again = asyncio.run(request())
    assert after_first == (0, 1)
    assert gets_and_sets(client) == (1, 1) and again == first


def test_the_hint_is_for_its_key_and_its_context_only(setup):
    decorator, client = setup

    async def remember():
        await decorator.aget_cached(sample_input(age=31), remember_miss=True)
        client.config_resetstat()
        decorator.predict(sample_input(age=32))  # another key: looks up for itself
        other_context = contextvars.Context().run(decorator.predict, sample_input(age=31))  # no hint there
        await decorator.aclose()
        return other_context

    asyncio.run(remember())
    assert gets_and_sets(client)[0] == 2
    client.config_resetstat()
    decorator.predict(sample_input(age=33))  # outside the request's context: nothing remembered
    assert gets_and_sets(client)[0] == 1


def test_without_remember_miss_predict_looks_up_as_before(setup):
    decorator, client = setup

    async def request():
        assert await decorator.aget_cached(sample_input(age=34)) is None
        client.config_resetstat()
        decorator.predict(sample_input(age=34))
        await decorator.aclose()

    asyncio.run(request())
    assert gets_and_sets(client) == (1, 1)
