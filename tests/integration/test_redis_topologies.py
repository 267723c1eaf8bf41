"""Sentinel and Redis Cluster for real: a primary + replica + 3 Sentinels, and a 3 x 1 cluster made with
`redis-cli --cluster create`, all real redis-server processes on loopback.

The decorator hits through each topology (sync, and async as the service's fast path does); under
HTTP load, a killed primary (Sentinel and Cluster) and a reshard cost no failed and no wrong
prediction, no request stalls, and hits come back on every body within 15 s."""
import asyncio

import pytest
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.failover import SCENARIOS_BY_NAME, run_scenario
from cachedmodel.testing.faults import check
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input
from cachedmodel.testing.processes import free_port, wait_until
from cachedmodel.testing.redis_topologies import ClusterDeployment, SentinelDeployment, redis_cli

pytestmark = pytest.mark.integration

PASSWORD = "topology-password"
HITS_BACK_WITHIN_S = 15.0


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def sentinel():
    with SentinelDeployment(replicas=1, password=PASSWORD) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def cluster():
    with ClusterDeployment(shards=3, replicas_per_shard=1, password=PASSWORD) as deployment:
        yield deployment


def hits_sync_and_async(decorator, model, name, count=12):
    inputs = [sample_input(age=20 + i) for i in range(count)]
    expected = [model.predict(data) for data in inputs]
    assert [decorator.predict(data) for data in inputs] == expected  # misses, stored
    assert [decorator.predict(data) for data in inputs] == expected  # hits
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == count

    async def fast_path():
        try:
            return [await decorator.aget_cached(data) for data in inputs]
        finally:
            await decorator.aclose()
    assert asyncio.run(fast_path()) == expected
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 2 * count
    return inputs


def test_sentinel_hits_sync_and_async_and_replicates(sentinel):
    name = "sentinel_hits_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, sentinels=",".join(sentinel.sentinel_addresses),
                                      sentinel_service=sentinel.service, sentinel_password=PASSWORD,
                                      password=PASSWORD)
    inputs = hits_sync_and_async(decorator, model, name)
    assert "sentinel://" in repr(decorator) and PASSWORD not in repr(decorator)
    primary = sentinel.primary()
    replica = next(node for node in sentinel.nodes if node is not primary)
    key = decorator.cache_key(inputs[0])
    wait_until(lambda: redis_cli(replica.port, "EXISTS", key, password=PASSWORD).strip() == "1", 10,
               what="the entry replicated to the replica")
    decorator.close()


def test_sentinel_wrong_sentinel_password_is_a_counted_fallback(sentinel):
    name = "sentinel_badauth_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, sentinels=sentinel.sentinel_addresses, sentinel_service=sentinel.service,
                                      sentinel_password="not-the-password", password=PASSWORD)
    data = sample_input(age=33)
    assert decorator.predict(data) == model.predict(data)
    assert decorator.predict(data) == model.predict(data)
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 0
    counted = sum(metric("cachedmodel_cache_errors_total", model=name, kind=kind)
                  for kind in ("connection", "auth"))
    assert counted >= 1
    decorator.close()


def test_unknown_sentinel_service_is_a_counted_fallback(sentinel):
    name = "sentinel_noservice_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, sentinels=sentinel.sentinel_addresses, sentinel_service="nosuch",
                                      sentinel_password=PASSWORD, password=PASSWORD)
    data = sample_input(age=34)
    assert decorator.predict(data) == model.predict(data)
    assert metric("cachedmodel_cache_errors_total", model=name, kind="connection") >= 1
    decorator.close()


def test_cluster_hits_sync_and_async_across_shards(cluster):
    name = "cluster_hits_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, cluster_nodes=cluster.addresses[:2], password=PASSWORD, prefix="c")
    inputs = hits_sync_and_async(decorator, model, name, count=30)
    holders = set()
    for data in inputs:
        key = decorator.cache_key(data)
        slot = int(redis_cli(cluster.nodes[0].port, "CLUSTER", "KEYSLOT", key, password=PASSWORD))
        holders.add(next(row["port"] for row in cluster.node_table() if "master" in row["flags"]
                         and any(_in_range(slot, part) for part in row["slots"])))
    assert len(holders) >= 2, "30 keys should spread over more than one of the 3 primaries"
    assert "cluster://" in repr(decorator) and PASSWORD not in repr(decorator)
    decorator.close()


def _in_range(slot: int, part: str) -> bool:
    if part.startswith("["):
        return False  # a slot being migrated, not owned
    low, _, high = part.partition("-")
    return int(low) <= slot <= int(high or low)


def test_cluster_unreachable_at_start_is_a_counted_fallback():
    name = "cluster_down_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, cluster_nodes=[f"127.0.0.1:{free_port()}"])  # built: nothing asked yet
    data = sample_input(age=40)
    assert decorator.predict(data) == model.predict(data)
    assert metric("cachedmodel_cache_errors_total", model=name, kind="connection") >= 1
    decorator.close()


@pytest.mark.parametrize("scenario", ["sentinel-kill-primary", "cluster-kill-primary", "cluster-reshard"])
def test_topology_event_under_http_load(scenario):
    result = run_scenario(SCENARIOS_BY_NAME[scenario], recovery_bound_s=HITS_BACK_WITHIN_S)
    assert check(result, recovery_bound_s=HITS_BACK_WITHIN_S) == [], result
    assert result["all_hits_s"] <= HITS_BACK_WITHIN_S, result
    if scenario == "cluster-reshard":  # MOVED/ASK cost a redirect, never a miss or an error
        assert result["errors_counted"] == {}, result
        assert result["hit_share_during_event"] == 1.0, result
