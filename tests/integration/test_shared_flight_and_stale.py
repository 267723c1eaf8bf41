"""Single-flight across processes (a Redis lease) and stale-while-revalidate, against a real redis-server:
64 identical misses in 4 processes call the model once; at a hot key's expiry no caller waits for the
model and the model is called once."""
import threading
import time

import pytest
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.freshness import unwrap
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input
from cachedmodel.testing.processes import wait_until
from cachedmodel.testing.redis_server import RedisServer
from cachedmodel.testing.redis_topologies import redis_cli
from cachedmodel.testing.stampede import CountingModel, model_calls, stampede

pytestmark = pytest.mark.integration


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture()
def server():
    with RedisServer() as started:
        yield started


@pytest.mark.parametrize("shared, calls", [(True, {1}), (False, {2, 3, 4})])
def test_identical_misses_in_four_processes(server, tmp_path, shared, calls):
    result = stampede(server.url, str(tmp_path / "calls"), processes=4, threads=16, delay=0.3,
                      shared_single_flight=shared)
    assert (result.requests, result.wrong) == (64, 0)
    # in-process single-flight alone: one call per process (4), fewer only when a process started its
    # lookups so late (a busy machine) that another one had already stored the value: a hit
    assert result.model_calls in calls
    assert result.max_latency_s < 0.3 + 5.0 + 2.0  # never longer than the model plus the lease bound


def test_a_failing_lease_holder_does_not_stall_the_others(server, tmp_path):
    """The holder's model fails: it releases the lease, the waiter computes at once (no lease_seconds wait)."""
    calls = str(tmp_path / "calls")
    failing = CountingModel(calls, delay_seconds=0.3, qualified_name="lease_fail_model")
    failing.fail_with = RuntimeError("model down")
    working = CountingModel(calls, delay_seconds=0.0, qualified_name="lease_fail_model")
    first = RedisCachingDecorator(failing, url=server.url, shared_single_flight=True, lease_seconds=10)
    second = RedisCachingDecorator(working, url=server.url, shared_single_flight=True, lease_seconds=10)
    data = sample_input(age=61)
    errors = []

    def holder():
        try:
            first.predict(data)
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=holder)
    thread.start()
    wait_until(lambda: model_calls(calls) == 1, 10, what="the holder to take the lease and call its model")
    started = time.monotonic()
    assert second.predict(data) == working.predict(data)
    assert time.monotonic() - started < 3.0, "the waiter waited out the lease instead of seeing it released"
    thread.join(10)
    assert len(errors) == 1
    first.close(), second.close()


def test_a_value_stored_between_the_lookup_and_the_lease_is_not_computed_again(server, tmp_path):
    """Seen on real pods under load (7 model calls for 6 inputs over 2 pods): process B looks the key up
    (a miss) just before process A stores it, then takes the lease A has just released, and computed the
    value again. After taking the lease B must look once more. This drives that interleaving: A's whole
    predict() runs between B's lookup and B's lease."""
    calls = str(tmp_path / "calls")
    first = RedisCachingDecorator(CountingModel(calls, 0.0, "lease_late_model"), url=server.url,
                                  shared_single_flight=True)
    second = RedisCachingDecorator(CountingModel(calls, 0.0, "lease_late_model"), url=server.url,
                                   shared_single_flight=True)
    data = sample_input(age=63)
    key = second.cache_key(data).encode()
    assert second.get_cached(data) is None, "B's lookup: a miss"
    expected = first.predict(data)  # A: miss, lease, model, store, release
    assert model_calls(calls) == 1
    shared_before = value("cachedmodel_singleflight_shared_total", model="lease_late_model")
    output, stored = second._predict_and_store(key, data)  # B goes on from its miss: lease, then ...
    assert output == expected and stored
    assert model_calls(calls) == 1, "B took the released lease and called its model again"
    assert value("cachedmodel_singleflight_shared_total", model="lease_late_model") == shared_before + 1
    first.close(), second.close()


def test_redis_down_falls_back_to_in_process_single_flight(tmp_path):
    server = RedisServer().start()
    calls = str(tmp_path / "calls")
    model = CountingModel(calls, delay_seconds=0.0, qualified_name="lease_down_model")
    decorator = RedisCachingDecorator(model, url=server.url, shared_single_flight=True)
    server.stop()
    data = sample_input(age=62)
    answers = []
    model.gate = threading.Event()  # the model answers once all 8 callers share its call
    threads = [threading.Thread(target=lambda: answers.append(decorator.predict(data))) for _ in range(8)]
    [thread.start() for thread in threads]
    key = decorator.cache_key(data).encode()
    wait_until(lambda: decorator._flight.waiters(key) == 7, 30, what="the other 7 callers to share the call")
    model.gate.set()
    [thread.join(20) for thread in threads]
    assert len(answers) == 8 and model_calls(calls) == 1
    decorator.close()


def test_hot_key_expiry_serves_stale_and_refreshes_once(server, tmp_path):
    name = "stale_model"
    calls = str(tmp_path / "calls")
    model = CountingModel(calls, delay_seconds=0.0, qualified_name=name)
    decorator = RedisCachingDecorator(model, url=server.url, ttl_seconds=1, stale_seconds=60)
    data = sample_input(age=40)
    expected = decorator.predict(data)
    key = decorator.cache_key(data)
    assert model_calls(calls) == 1
    ttl = int(redis_cli(server.port, "TTL", key))
    assert 1 < ttl <= 61  # kept for ttl + stale
    fresh_until = unwrap(_raw_get(server.port, key))[1]
    wait_until(lambda: time.time() > fresh_until + 0.05, 5, what="the entry to go stale")
    answers = []
    model.gate = threading.Event()  # the refresh cannot finish until every caller has its answer
    threads = [threading.Thread(target=lambda: answers.append(decorator.predict(data))) for _ in range(32)]
    [thread.start() for thread in threads]
    [thread.join(20) for thread in threads]
    assert answers == [expected] * 32, "a caller waited for the model instead of getting the stale entry"
    model.gate.set()
    wait_until(lambda: value("cachedmodel_cache_refreshes_total", model=name) == 1, 10,
               what="one background refresh")
    assert model_calls(calls) == 2  # the first miss and exactly one refresh
    assert unwrap(_raw_get(server.port, key))[1] > fresh_until  # fresh again
    assert value("cachedmodel_cache_stale_hits_total", model=name) >= 1
    decorator.close()


def _raw_get(port, key) -> bytes:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key.encode()))
        reply = b""
        while b"\r\n" not in reply:
            reply += sock.recv(65536)
        header, _, rest = reply.partition(b"\r\n")
        length = int(header[1:])
        while len(rest) < length + 2:
            rest += sock.recv(65536)
        return rest[:length]


def test_early_refresh_refreshes_before_expiry(server, tmp_path):
    name = "early_refresh_model"
    calls = str(tmp_path / "calls")
    decorator = RedisCachingDecorator(CountingModel(calls, delay_seconds=0.2, qualified_name=name), url=server.url,
                                      ttl_seconds=3, stale_seconds=30, early_refresh_beta=50)
    data = sample_input(age=41)
    decorator.predict(data)
    fresh_until = unwrap(_raw_get(server.port, decorator.cache_key(data)))[1]
    # beta x cost = 10 s of lookahead against a 3 s freshness: a hit refreshes early, while still fresh
    wait_until(lambda: decorator.predict(data) and value("cachedmodel_cache_refreshes_total", model=name) >= 1,
               5, interval=0.05, what="an early refresh")
    assert time.time() < fresh_until + 1.0
    decorator.close()


def test_stale_entries_live_in_their_own_namespace(server):
    plain = RedisCachingDecorator(InsuranceLikeModel(qualified_name="ns_model"), url=server.url, ttl_seconds=5)
    stale = RedisCachingDecorator(InsuranceLikeModel(qualified_name="ns_model"), url=server.url, ttl_seconds=5,
                                  stale_seconds=5)
    data = sample_input()
    assert plain.cache_key(data) != stale.cache_key(data)
    plain.close(), stale.close()
