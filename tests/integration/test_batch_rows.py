"""Per-row caching of batch inputs against a real redis-server (and a real Redis Cluster): one MGET per
batch, the model called once with only the rows that missed (in their order), results stitched back in
input order, the new rows stored in one pipeline; row keys equal single-input keys."""
import threading

import pytest
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import (Batch, BatchInsuranceLikeModel, Charges, InsuranceLikeModel,
                                                      sample_input)
from cachedmodel.testing.redis_server import RedisServer
from cachedmodel.testing.redis_topologies import ClusterDeployment, redis_cli

pytestmark = pytest.mark.integration

BatchModel = BatchInsuranceLikeModel


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def commandstats(port) -> dict:
    stats = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            stats[name[8:]] = int(dict(part.split("=") for part in rest.split(","))["calls"])
    return stats


@pytest.fixture(scope="module")
def server():
    with RedisServer() as started:
        yield started


def people(*ages):
    return [sample_input(age=age) for age in ages]


def test_only_missed_rows_reach_the_model_in_order_with_one_round_trip_each_way(server):
    name = "batch_rows_model"
    model = BatchModel(name)
    decorator = RedisCachingDecorator(model, url=server.url)
    first = people(20, 21, 22, 23, 24)
    assert decorator.predict(Batch(first)) == model.predict(Batch(first))
    model.calls.clear()
    before = commandstats(server.port)
    mixed = people(30, 21, 31, 23, 32, 20)  # 3 cached rows interleaved with 3 new ones
    answer = decorator.predict(Batch(mixed))
    after = commandstats(server.port)
    assert answer == Charges([model.single.predict(row) for row in mixed])  # stitched in input order
    assert model.calls == [people(30, 31, 32)]                              # only the misses, in order
    assert after.get("mget", 0) - before.get("mget", 0) == 1                # one lookup round trip
    assert after.get("set", 0) - before.get("set", 0) == 3                  # one pipeline of 3 SETs
    assert after.get("get", 0) == before.get("get", 0)
    model.calls.clear()
    assert decorator.predict([row.model_dump() for row in mixed]) == answer  # plain JSON rows too
    assert model.calls == []                                                # all 6 rows hit
    requests = value("cachedmodel_cache_requests_total", model=name)
    assert requests == 5 + 6 + 6                                            # every row is one request
    assert requests == value("cachedmodel_cache_hits_total", model=name, tier="redis") + \
        value("cachedmodel_cache_misses_total", model=name)
    decorator.close()


def test_row_keys_equal_single_input_keys_and_share_entries(server):
    name = "batch_shared_keys_model"
    single = RedisCachingDecorator(InsuranceLikeModel(qualified_name=name), url=server.url, prefix="p")
    batch_model = BatchModel(name)
    batch = RedisCachingDecorator(batch_model, url=server.url, prefix="p")
    row = sample_input(age=44)
    assert batch.cache_key(row) == single.cache_key(row)
    single.predict(row)                             # stored by the single-input model
    assert batch.predict(Batch([row])) == Charges([single.predict(row)])
    assert batch_model.calls == []                  # a hit on the single model's entry
    single.close(), batch.close()


def test_options_apply_per_row(server):
    name = "batch_options_model"
    model = BatchModel(name)
    decorator = RedisCachingDecorator(model, url=server.url, reduced_precision_fields=["bmi"], number_of_places=1,
                                      hashing_fields=["age", "bmi"], local_cache_size=16)
    rows = [sample_input(age=50, bmi=27.123), sample_input(age=50, bmi=27.14, children=5)]  # same key per row
    decorator.predict(Batch(rows[:1]))
    model.calls.clear()
    decorator.predict(Batch(rows[1:]))
    assert model.calls == []                        # rounded bmi + hashing fields: the second row hits
    assert value("cachedmodel_cache_hits_total", model=name, tier="local") == 1
    assert decorator.cache_key(rows[0]) == decorator.cache_key(rows[1])
    with pytest.raises(Exception, match="'nope' is not an input field"):  # Row fields are the names
        RedisCachingDecorator(BatchModel("batch_bad_field"), url=server.url, hashing_fields=["children", "nope"])
    decorator.close()


def test_concurrent_batches_compute_each_row_once(server):
    name = "batch_flight_model"
    model = BatchModel(name, delay_seconds=0.3)
    decorator = RedisCachingDecorator(model, url=server.url)
    batches = [Batch(people(60, 61, 62)), Batch(people(62, 61, 63)), Batch(people(63, 60, 64))]
    answers = [None] * len(batches)
    barrier = threading.Barrier(len(batches))

    def run(index):
        barrier.wait(10)
        answers[index] = decorator.predict(batches[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(batches))]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    assert answers == [Charges([model.single.predict(row) for row in batch.root]) for batch in batches]
    computed = [row.age for call in model.calls for row in call]
    assert sorted(computed) == [60, 61, 62, 63, 64]  # every distinct row once, across the three batches
    decorator.close()


def test_redis_down_answers_from_the_model_and_counts_every_row():
    name = "batch_down_model"
    model = BatchModel(name)
    server = RedisServer().start()
    decorator = RedisCachingDecorator(model, url=server.url, circuit_breaker_failures=1,
                                      circuit_breaker_reset_seconds=30)
    server.stop()
    rows = people(25, 26, 27)
    assert decorator.predict(Batch(rows)) == Charges([model.single.predict(row) for row in rows])
    assert decorator.predict(Batch(rows)) == Charges([model.single.predict(row) for row in rows])
    assert value("cachedmodel_cache_bypass_total", model=name, reason="redis_error") == 3
    assert value("cachedmodel_cache_bypass_total", model=name, reason="circuit_open") == 3
    assert value("cachedmodel_cache_requests_total", model=name) == 6
    decorator.close()


def test_a_model_answering_the_wrong_number_of_rows_is_answered_uncached(server):
    name = "batch_broken_model"
    model = BatchModel(name, answer_rows=1)
    decorator = RedisCachingDecorator(model, url=server.url)
    rows = people(35, 36)
    assert decorator.predict(Batch(rows)) == Charges([model.single.predict(rows[0])])  # the model's own answer
    assert value("cachedmodel_cache_errors_total", model=name, kind="encode") == 1
    assert int(redis_cli(server.port, "EXISTS", decorator.cache_key(rows[0]))) == 0
    decorator.close()


def test_batches_over_a_redis_cluster():
    name = "batch_cluster_model"
    model = BatchModel(name)
    with ClusterDeployment(shards=3, replicas_per_shard=0) as cluster:
        decorator = RedisCachingDecorator(model, cluster_nodes=cluster.addresses)
        rows = people(*range(18, 48))  # 30 rows over the 3 primaries' slots
        expected = Charges([model.single.predict(row) for row in rows])
        assert decorator.predict(Batch(rows)) == expected
        model.calls.clear()
        assert decorator.predict(Batch(rows)) == expected and model.calls == []
        keys_per_node = [int(redis_cli(node.port, "DBSIZE")) for node in cluster.nodes]
        assert sum(keys_per_node) == 30 and sum(1 for count in keys_per_node if count) >= 2
        decorator.close()


def test_batches_over_http(tmp_path, server):
    import httpx
    import yaml

    from cachedmodel.testing.model_service import ModelService

    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.service_models.BatchEchoModel", "create_endpoint": True,
        "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator", "configuration": {"url": server.url}}]}]}))
    service = ModelService(config=config)
    try:
        service.start()
        with httpx.Client(base_url=service.url, timeout=10.0) as http:
            url = "/api/models/batch_echo_model/prediction"
            first = http.post(url, json=[{"value": 1}, {"value": 2}])
            assert first.status_code == 200 and first.json() == [{"doubled": 2}, {"doubled": 4}], first.text
            assert "x-cache" not in first.headers  # a batch is neither one hit nor one miss
            second = http.post(url, json=[{"value": 3}, {"value": 2.0}, {"value": 1}])
            assert second.json() == [{"doubled": 6}, {"doubled": 4}, {"doubled": 2}]
            bad = http.post(url, json=[{"value": 1}, {"value": -5}])
            assert bad.status_code == 400 and "value" in bad.text, bad.text
            metrics = http.get("/metrics").text
        samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                   if line.startswith("cachedmodel_cache_") and 'model="batch_echo_model"' in line}
        assert samples['cachedmodel_cache_requests_total{model="batch_echo_model"}'] == 5
        assert samples['cachedmodel_cache_hits_total{model="batch_echo_model",tier="redis"}'] == 2
        assert samples['cachedmodel_cache_misses_total{model="batch_echo_model"}'] == 3
    finally:
        service.cleanup()
