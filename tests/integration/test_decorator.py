"""The decorator against a real redis-server: hits, misses, every serder x compression, TTL, hashing
fields, reduced precision, corrupt entries, stampedes and the async lookup."""
import asyncio
import struct
import threading

import pytest
import redis
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, InsuranceOutput, sample_input
from cachedmodel.testing.redis_server import wait_until

pytestmark = pytest.mark.integration
CHOICES = [(serder, compression) for serder in ("JSON", "MessagePack") for compression in (False, True)]


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


def make(redis_server, model=None, **options):
    model = model or InsuranceLikeModel()
    return model, RedisCachingDecorator(model, url=redis_server.url, **options)


@pytest.mark.parametrize("serder, compression", CHOICES)
def test_miss_then_hit_returns_exactly_the_models_output(redis_server, client, serder, compression):
    name = f"hit_{serder}_{compression}"
    model, decorator = make(redis_server, InsuranceLikeModel(qualified_name=name), serder=serder,
                            use_compression=compression)
    data = sample_input()
    first = decorator.predict(data)
    second = decorator.predict(data)
    assert model.calls == 1
    assert type(second) is InsuranceOutput and struct.pack("<d", second.charges) == struct.pack("<d", first.charges)
    assert second == first
    assert client.exists(decorator.cache_key(data)) == 1
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 1
    assert metric("cachedmodel_cache_misses_total", model=name) == 1
    assert metric("cachedmodel_cache_lookup_seconds_count", model=name) == 2
    other = decorator.predict(sample_input(age=43))
    assert model.calls == 2 and other != first


def test_entries_written_with_other_options_are_not_shared(redis_server):
    model = InsuranceLikeModel()
    decorators = [RedisCachingDecorator(model, url=redis_server.url, serder=serder, use_compression=compression)
                  for serder, compression in CHOICES]
    keys = {decorator.cache_key(sample_input()) for decorator in decorators}
    assert len(keys) == 4
    for decorator in decorators:
        decorator.predict(sample_input())
    assert model.calls == 4


@pytest.mark.parametrize("ttl, expected", [(None, -1), (0, -1), (120, 120)])
def test_ttl_is_set_on_keys(redis_server, client, ttl, expected):
    _, decorator = make(redis_server, ttl_seconds=ttl)
    decorator.predict(sample_input())
    remaining = client.ttl(decorator.cache_key(sample_input()))
    assert remaining == expected if expected == -1 else 110 < remaining <= expected


def test_fractional_ttl_uses_milliseconds(redis_server, client):
    _, decorator = make(redis_server, ttl_seconds=2.5)
    decorator.predict(sample_input())
    assert 2000 < client.pttl(decorator.cache_key(sample_input())) <= 2500


def test_hashing_fields_key_only_those_fields(redis_server):
    model, decorator = make(redis_server, hashing_fields=["age", "smoker"])
    first = decorator.predict(sample_input(bmi=20.0, region="southeast"))
    assert decorator.predict(sample_input(bmi=45.0, region="northeast")) == first  # same age and smoker: a hit
    decorator.predict(sample_input(smoker=True))
    assert model.calls == 2


def test_reduced_precision_hit_equals_miss_and_caller_object_is_unchanged(redis_server):
    model, decorator = make(redis_server, reduced_precision_fields=["bmi"], number_of_places=2)
    request = sample_input(bmi=27.123456789)
    miss = decorator.predict(request)
    hit = decorator.predict(sample_input(bmi=27.12444))
    again = decorator.predict(request)
    assert model.calls == 1 and miss == hit == again
    assert request.bmi == 27.123456789 and model.seen[0].bmi == 27.12
    assert decorator.predict(sample_input(bmi=27.13)) != miss


def test_garbage_under_a_key_is_counted_replaced_and_answered_by_the_model(redis_server, client):
    model, decorator = make(redis_server, InsuranceLikeModel(qualified_name="garbage_model"))
    data = sample_input()
    key = decorator.cache_key(data)
    for garbage in (b"garbage", b"\x11\xc1\xc1", b"\x80\x04\x95pickle"):
        client.set(key, garbage)
        before = metric("cachedmodel_cache_errors_total", model="garbage_model", kind="decode")
        assert decorator.predict(data) == model.predict(data)
        assert metric("cachedmodel_cache_errors_total", model="garbage_model", kind="decode") == before + 1
        assert client.get(key) != garbage  # replaced by a good entry
    calls = model.calls
    decorator.predict(data)
    assert model.calls == calls  # the replaced entry is a hit again


def test_entry_from_another_model_version_is_never_read(redis_server):
    old_model, old = make(redis_server, InsuranceLikeModel(version="1"))
    new_model, new = make(redis_server, InsuranceLikeModel(version="2"))
    old.predict(sample_input())
    new.predict(sample_input())
    assert old_model.calls == 1 and new_model.calls == 1


def test_local_tier_answers_without_redis_and_expires(redis_server, client):
    model, decorator = make(redis_server, InsuranceLikeModel(qualified_name="local_model"), local_cache_size=10,
                            local_cache_ttl_seconds=60)
    data = sample_input()
    first = decorator.predict(data)
    client.flushall()  # only the local tier has it now
    assert decorator.predict(data) == first and model.calls == 1
    assert metric("cachedmodel_cache_hits_total", model="local_model", tier="local") == 1


def test_local_tier_hits_are_the_callers_own_objects(redis_server, client):
    """The local tier keeps a built output and hands out copies: what a caller does to its answer (a
    miss's, a Redis hit's or a local hit's) never reaches the next caller."""
    model, decorator = make(redis_server, InsuranceLikeModel(qualified_name="local_owned"), local_cache_size=10)
    data = sample_input()
    miss = decorator.predict(data)
    charges = miss.charges
    miss.charges = -1.0  # the caller changes the miss's answer, which the local tier also keeps
    hit = decorator.predict(data)
    assert hit.charges == charges and hit is not miss and hit.model_fields_set == {"charges"}
    hit.charges = -2.0
    again = decorator.predict(data)
    assert again.charges == charges and again is not hit and model.calls == 1
    assert metric("cachedmodel_cache_hits_total", model="local_owned", tier="local") == 2
    _, other = make(redis_server, InsuranceLikeModel(qualified_name="local_owned"), local_cache_size=10)
    from_redis = other.predict(data)  # a Redis hit fills the other process's local tier
    from_redis.charges = -3.0
    assert other.predict(data).charges == charges
    other.close()
    decorator.close()


def test_stampede_of_64_threads_calls_the_model_once(redis_server):
    model, decorator = make(redis_server, InsuranceLikeModel(qualified_name="stampede_model", delay_seconds=0.3))
    barrier = threading.Barrier(64)
    results, errors = [], []

    def request():
        barrier.wait()
        try:
            results.append(decorator.predict(sample_input()))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=request) for _ in range(64)]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    assert not errors and len(results) == 64
    assert model.calls == 1
    assert all(result == results[0] for result in results)
    assert metric("cachedmodel_singleflight_shared_total", model="stampede_model") == 63


def test_without_single_flight_a_stampede_calls_the_model_many_times(redis_server):
    """The control for the test above: it shows that the stampede is real."""
    model, decorator = make(redis_server, InsuranceLikeModel(delay_seconds=0.3), single_flight=False)
    barrier = threading.Barrier(16)

    def request():
        barrier.wait()
        decorator.predict(sample_input())

    threads = [threading.Thread(target=request) for _ in range(16)]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    assert model.calls > 1


def test_model_error_reaches_every_waiter_and_nothing_is_cached(redis_server, client):
    """The model fails only once all 8 callers share its call: a caller slowed down past the failure
    (a busy CI machine) would rightly call the model again, since errors do not linger."""
    model, decorator = make(redis_server)
    model.fail_with = ValueError("model failed")
    model.gate = threading.Event()
    errors = []

    def request():
        try:
            decorator.predict(sample_input())
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=request) for _ in range(8)]
    [thread.start() for thread in threads]
    key = decorator.cache_key(sample_input()).encode()
    wait_until(lambda: decorator._flight.waiters(key) == 7, timeout=30, what="the other 7 callers to share the call")
    model.gate.set()
    [thread.join(30) for thread in threads]
    assert len(errors) == 8 and model.calls == 1
    assert client.exists(decorator.cache_key(sample_input())) == 0
    model.fail_with = None
    assert decorator.predict(sample_input()).charges > 0 and model.calls == 2


def test_get_cached_and_aget_cached_are_hit_only(redis_server):
    model, decorator = make(redis_server)
    data = sample_input()
    assert decorator.get_cached(data) is None
    assert asyncio.run(decorator.aget_cached(data)) is None
    assert model.calls == 0
    expected = decorator.predict(data)
    assert decorator.get_cached(data) == expected

    async def twice():
        first = await decorator.aget_cached(data)
        second = await decorator.aget_cached(data)
        await decorator.aclose()
        return first, second

    for _ in range(2):  # a second event loop gets its own client
        first, second = asyncio.run(twice())
        assert first == second == expected and type(first) is InsuranceOutput
    assert model.calls == 1


def test_event_loops_that_end_without_aclose_do_not_leak_redis_connections(redis_server, client):
    """asyncio.run() per call (or a test framework's loop per test) must not leave one open
    redis.asyncio client per finished loop behind."""
    import gc

    _, decorator = make(redis_server)
    data = sample_input()
    expected = decorator.predict(data)
    baseline = client.info("clients")["connected_clients"]
    for _ in range(12):
        assert asyncio.run(decorator.aget_cached(data)) == expected
    gc.collect()
    wait_until(lambda: client.info("clients")["connected_clients"] <= baseline + 1, timeout=10,
               what="connections of finished event loops to be closed")


def test_password_and_database_from_env(redis_server_factory, monkeypatch):
    server = redis_server_factory(password="s3cret")
    monkeypatch.setenv("TEST_REDIS_URL", f"redis://127.0.0.1:{server.port}/3")
    monkeypatch.setenv("TEST_REDIS_PASSWORD", "s3cret")
    model = InsuranceLikeModel()
    decorator = RedisCachingDecorator(model, url="${TEST_REDIS_URL}", password="${TEST_REDIS_PASSWORD}")
    decorator.predict(sample_input())
    decorator.predict(sample_input())
    assert model.calls == 1
    with redis.Redis(port=server.port, password="s3cret", db=3) as client:
        assert client.dbsize() == 1


def test_unix_socket_url(redis_server_factory, tmp_path):
    socket_path = tmp_path / "redis.sock"
    redis_server_factory(extra_args=["--unixsocket", str(socket_path), "--unixsocketperm", "700"])
    model = InsuranceLikeModel()
    decorator = RedisCachingDecorator(model, url=f"unix://{socket_path}")
    decorator.predict(sample_input())
    decorator.predict(sample_input())
    assert model.calls == 1
