"""The cache is never a single point of failure: a killed, restarted, paused or full Redis only costs
cache hits; predictions keep coming from the model, failures are counted, recovery is automatic."""
import threading
import time

import pytest
import redis
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from tests.support.insurance_like_model import InsuranceLikeModel, sample_input
from tests.support.redis_server import wait_until

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
