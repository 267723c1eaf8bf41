"""The cache is never a single point of failure: a killed, restarted, paused or full Redis only costs
cache hits; predictions keep coming from the model, failures are counted, recovery is automatic."""
import threading
import time

import pytest
import redis
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input
from cachedmodel.testing.redis_server import wait_until

pytestmark = pytest.mark.integration


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def errors(model, kind):
    return metric("cachedmodel_cache_errors_total", model=model, kind=kind)


def test_redis_killed_and_restarted_mid_run(redis_server):
    name = "restart_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, circuit_breaker_failures=3,
                                      circuit_breaker_reset_seconds=0.5, socket_timeout=0.25,
                                      socket_connect_timeout=0.25)
    inputs = [sample_input(age=20 + i) for i in range(5)]
    expected = [model.predict(data) for data in inputs]
    for data in inputs:
        decorator.predict(data)
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 0
    [decorator.predict(data) for data in inputs]
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 5

    redis_server.kill()
    before = errors(name, "connection") + errors(name, "timeout")
    durations = []
    for round_ in range(40):
        started = time.perf_counter()
        assert decorator.predict(inputs[round_ % 5]) == expected[round_ % 5]
        durations.append(time.perf_counter() - started)
    failed = errors(name, "connection") + errors(name, "timeout") - before
    assert 1 <= failed <= 10, failed  # counted, but the open circuit skipped most calls
    assert decorator.circuit_state in ("open", "half_open")
    assert metric("cachedmodel_circuit_breaker_open", model=name) == 1
    assert sorted(durations)[len(durations) // 2] < 0.05  # no per-request timeout while open

    redis_server.start()  # same port, empty
    hits = metric("cachedmodel_cache_hits_total", model=name, tier="redis")

    def hits_resumed():
        for data, want in zip(inputs, expected):
            assert decorator.predict(data) == want
        return metric("cachedmodel_cache_hits_total", model=name, tier="redis") > hits

    wait_until(hits_resumed, timeout=15, interval=0.1, what="cache hits after Redis restarted")
    assert decorator.circuit_state == "closed"
    assert metric("cachedmodel_circuit_breaker_open", model=name) == 0


def test_paused_redis_times_out_quickly_and_the_circuit_opens(redis_server):
    name = "paused_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, socket_timeout=0.1, circuit_breaker_failures=2,
                                      circuit_breaker_reset_seconds=30)
    decorator.predict(sample_input())  # connections are open before the pause
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        try:
            started = time.perf_counter()
            for age in range(20, 40):
                assert decorator.predict(sample_input(age=age)).charges > 0
            elapsed = time.perf_counter() - started
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    assert errors(name, "timeout") == 2
    assert decorator.circuit_state == "open"
    assert elapsed < 1.5, elapsed  # two 0.1 s timeouts, then no more waiting


def test_one_request_pays_at_most_one_redis_timeout(redis_server):
    """After its GET timed out, a request does not also try to SET the model's answer (a second timeout)."""
    name = "one_timeout_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, socket_timeout=0.2, circuit_breaker_failures=3,
                                      circuit_breaker_reset_seconds=30)
    decorator.predict(sample_input())  # connections are open before the pause
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        try:
            for count, age in enumerate((20, 21, 22), 1):
                assert decorator.predict(sample_input(age=age)) == model.predict(sample_input(age=age))
                assert errors(name, "timeout") == count  # the GET timed out; no SET was tried
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    assert decorator.circuit_state == "open"


def test_full_redis_under_noeviction_counts_oom_and_keeps_predicting(redis_server_factory):
    server = redis_server_factory(extra_args=["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"])
    with redis.Redis(port=server.port) as admin:
        filler = 0
        while True:  # fill it up to the limit with someone else's data
            try:
                admin.set(f"filler:{filler}", b"x" * 4096)
            except redis.exceptions.OutOfMemoryError:
                break
            filler += 1
    name = "oom_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=server.url, circuit_breaker_failures=2)
    for age in range(20, 40):
        assert decorator.predict(sample_input(age=age)) == model.predict(sample_input(age=age))
    assert errors(name, "oom") == 20
    assert decorator.circuit_state == "closed"  # Redis answers: reads still go to it
    with redis.Redis(port=server.port) as admin:  # room again (1mb is barely above an idle server's usage)
        admin.config_set("maxmemory", "64mb")
    decorator.predict(sample_input(age=20))
    decorator.predict(sample_input(age=20))
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 1


def test_threads_keep_predicting_while_redis_dies(redis_server):
    name = "threads_dying_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, circuit_breaker_reset_seconds=0.2)
    failures, done = [], threading.Event()
    counts = [0] * 8

    def worker(index):
        while not done.is_set():
            try:
                decorator.predict(sample_input(age=20 + (counts[index] % 30)))
                counts[index] += 1
            except Exception as error:  # noqa: BLE001
                failures.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    [thread.start() for thread in threads]
    try:
        wait_until(lambda: min(counts) > 20, timeout=10, what="warm-up")
        redis_server.kill()
        marks = list(counts)
        wait_until(lambda: all(now > then + 20 for now, then in zip(counts, marks)), timeout=10,
                   what="predictions while Redis is down")
        redis_server.start()
        marks = list(counts)
        wait_until(lambda: all(now > then + 20 for now, then in zip(counts, marks)), timeout=10,
                   what="predictions after Redis restarted")
    finally:
        done.set()
        [thread.join(10) for thread in threads]
    assert not failures


def test_a_cancelled_async_probe_does_not_keep_the_cache_off(redis_server):
    """aget_cached is the half-open probe and its caller gives up (asyncio timeout): the probe never
    reports, yet the circuit must close again once Redis answers (recovery is automatic)."""
    import asyncio

    name = "cancelled_probe_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, socket_timeout=0.5, circuit_breaker_failures=1,
                                      circuit_breaker_reset_seconds=0.3)
    data = sample_input()
    decorator.predict(data)  # stored

    async def impatient_lookup():
        try:
            await asyncio.wait_for(decorator.aget_cached(data), 0.1)
        except asyncio.TimeoutError:
            pass

    with redis.Redis.from_url(redis_server.url) as admin:
        # paused clients wait; so does the UNPAUSE below (it returns when the pause ends, < redis-py's 5 s timeout)
        admin.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        try:
            decorator.predict(sample_input(age=30))  # times out: the circuit opens
            assert decorator.circuit_state == "open"
            # once the interval has passed, the async lookup is the probe, and it is cancelled mid-call
            wait_until(lambda: asyncio.run(impatient_lookup()) or decorator.circuit_state == "half_open",
                       timeout=3, interval=0.05, what="the async probe to start")
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    hits = metric("cachedmodel_cache_hits_total", model=name, tier="redis")
    wait_until(lambda: decorator.predict(data) and metric("cachedmodel_cache_hits_total", model=name,
                                                          tier="redis") > hits,
               timeout=10, interval=0.05, what="cache hits after the cancelled probe")
    assert decorator.circuit_state == "closed"
