"""Redis-side figures on /metrics: INFO sampled in the background (never on the request path), so a
falling hit ratio can be explained by evictions; a failed sample is reported, never a cache error."""
import pytest
from prometheus_client import REGISTRY

from cachedmodel import RedisCachingDecorator
from cachedmodel.redis_info import SAMPLER, parse_info
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input
from cachedmodel.testing.processes import wait_until
from cachedmodel.testing.redis_server import RedisServer
from cachedmodel.testing.redis_topologies import ClusterDeployment, redis_cli

pytestmark = pytest.mark.integration


def series(name, model):
    return REGISTRY.get_sample_value(name, {"model": model})


def test_memory_evictions_and_keys_are_sampled():
    name = "redis_info_model"
    model = InsuranceLikeModel(qualified_name=name)
    with RedisServer(extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]) as server:
        decorator = RedisCachingDecorator(model, url=server.url, redis_info_interval_seconds=1)
        for age in range(18, 66):
            for children in range(6):
                for tenth in range(40):
                    decorator.predict(sample_input(age=age, children=children, bmi=20 + tenth / 10))
        # Redis goes on evicting for a moment after the writes: compare with a fresh DBSIZE each time
        wait_until(lambda: (series("cachedmodel_redis_evicted_keys_total", name) or 0) > 0
                   and series("cachedmodel_redis_keys", name) == int(redis_cli(server.port, "DBSIZE")), 15,
                   interval=0.1, what="an INFO sample after the evictions")
        assert series("cachedmodel_redis_maxmemory_bytes", name) == 2 * 1024 * 1024
        assert 0 < series("cachedmodel_redis_used_memory_bytes", name) <= 3 * 1024 * 1024
        assert series("cachedmodel_redis_keyspace_misses_total", name) >= 1
        assert series("cachedmodel_redis_up", name) == 1 and series("cachedmodel_redis_nodes", name) == 1
        assert series("cachedmodel_redis_sampled_timestamp_seconds", name) > 1.7e9
        server.kill()
        wait_until(lambda: series("cachedmodel_redis_up", name) == 0, 10, interval=0.1, what="up=0 after the kill")
        errors = sum(REGISTRY.get_sample_value("cachedmodel_cache_errors_total", {"model": name, "kind": kind}) or 0
                     for kind in ("connection", "timeout", "other"))
        assert errors == 0, "a failed INFO sample is not a cache error"
        assert decorator.circuit_state == "closed"
        decorator.close()
    assert series("cachedmodel_redis_up", name) is None  # closed: no longer sampled or exported


def test_cluster_figures_are_summed_over_the_primaries():
    name = "redis_info_cluster_model"
    with ClusterDeployment(shards=3, replicas_per_shard=0) as cluster:
        decorator = RedisCachingDecorator(InsuranceLikeModel(qualified_name=name), cluster_nodes=cluster.addresses,
                                          redis_info_interval_seconds=1)
        for age in range(18, 48):
            decorator.predict(sample_input(age=age))
        wait_until(lambda: series("cachedmodel_redis_keys", name) == 30, 10, interval=0.1,
                   what="30 keys summed over 3 primaries")
        assert series("cachedmodel_redis_nodes", name) == 3
        decorator.close()


def test_interval_zero_turns_sampling_off():
    with RedisServer() as server:
        decorator = RedisCachingDecorator(InsuranceLikeModel(qualified_name="redis_info_off_model"), url=server.url,
                                          redis_info_interval_seconds=0)
        assert SAMPLER.sample_due() > 0 and series("cachedmodel_redis_up", "redis_info_off_model") is None
        decorator.close()


def test_parse_info_reads_text_and_parsed_replies():
    text = ("# Memory\r\nused_memory:1024\r\nmaxmemory:2048\r\n# Stats\r\nevicted_keys:3\r\nkeyspace_hits:5\r\n"
            "keyspace_misses:7\r\n# Keyspace\r\ndb0:keys=11,expires=0,avg_ttl=0\r\ndb2:keys=13,expires=1\r\n")
    assert parse_info(text) == {"used_memory": 1024, "maxmemory": 2048, "keys": 11, "evicted_keys": 3,
                                "keyspace_hits": 5, "keyspace_misses": 7, "nodes": 1}
    assert parse_info(text.encode(), database=2)["keys"] == 13
    assert parse_info({"used_memory": 1, "db0": {"keys": 4}})["keys"] == 4
