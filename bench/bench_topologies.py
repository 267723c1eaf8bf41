"""Redis topologies benchmark: hit latency through one Redis, Sentinel and Cluster, and failover under load.

1. Per topology (one redis-server; a primary + replica + 3 Sentinels; a 3 x 1 Redis Cluster, all
   real processes on loopback): p50/p99 of `decorator.predict` cache hits, interleaved with a raw
   redis-py GET of the same key through redis-py's own client for that topology (`Redis`,
   `Sentinel.master_for`, `RedisCluster`) — the floor on that topology, so the ratio is ours alone.
2. The failover scenarios of cachedmodel.testing.failover under HTTP load (the model service, 4 client
   threads, 50 bodies): SIGKILL of the Sentinel primary, SIGKILL of a cluster primary, a 2000-slot
   reshard. Failed and wrong predictions (targets 0), the slowest request, and the seconds from the
   event to hits on every body again (target <= 15 s with a 1 s down-after / node timeout).
Writes bench/results/topologies.{json,md}. Bounded: about 1.5 minutes.
"""
from __future__ import annotations

import time

import redis
import redis.cluster
import redis.sentinel

from bench.bench_decorator import insurance_inputs, make_model
from bench.common import interleaved, markdown_table, write_results
from cachedmodel import RedisCachingDecorator
from cachedmodel.testing import failover
from cachedmodel.testing.faults import check
from cachedmodel.testing.model_service import MODEL_FILES_HINT, artifact_missing
from cachedmodel.testing.redis_server import RedisServer
from cachedmodel.testing.redis_topologies import ClusterDeployment, SentinelDeployment

NAME = "topologies"
ITERATIONS = 3000
KEYS = 16  # distinct cached inputs, so the cluster rows spread over its shards
RECOVERY_BOUND_S = 15.0


def _standalone():
    server = RedisServer().start()
    return server, {"url": server.url}, redis.Redis(port=server.port), server.stop


def _sentinel():
    deployment = SentinelDeployment(replicas=1).start()
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", node.port) for node in deployment.sentinel_nodes])
    raw = sentinel.master_for(deployment.service)
    options = {"sentinels": deployment.sentinel_addresses, "sentinel_service": deployment.service}
    return deployment, options, raw, lambda: (sentinel.close(), deployment.stop())


def _cluster():
    deployment = ClusterDeployment(shards=3, replicas_per_shard=1).start()
    raw = redis.cluster.RedisCluster(startup_nodes=[redis.cluster.ClusterNode("127.0.0.1", node.port)
                                                    for node in deployment.nodes])
    return deployment, {"cluster_nodes": deployment.addresses}, raw, deployment.stop


TOPOLOGIES = {"standalone": _standalone, "sentinel": _sentinel, "cluster": _cluster}


def hit_latency(mode: str) -> dict:
    _, options, raw, stop = TOPOLOGIES[mode]()
    try:
        decorator = RedisCachingDecorator(make_model(), prefix="bench", **options)
        inputs = insurance_inputs(KEYS)
        for data in inputs:
            decorator.predict(data)  # the misses that store the entries
        keys = [decorator.cache_key(data) for data in inputs]
        assert all(raw.get(key) is not None for key in keys)
        position = {"predict": 0, "raw": 0}

        def predict():
            index = position["predict"] = (position["predict"] + 1) % KEYS
            return decorator.predict(inputs[index])

        def raw_get():
            index = position["raw"] = (position["raw"] + 1) % KEYS
            return raw.get(keys[index])

        results = interleaved({"predict": predict, "raw_get": raw_get}, ITERATIONS)
        decorator.close()
    finally:
        raw.close()
        stop()
    return {"mode": mode, "predict": results["predict"], "raw_get": results["raw_get"],
            "p50_ratio_vs_raw_get": round(results["predict"]["p50_us"] / results["raw_get"]["p50_us"], 3)}


def main() -> dict:
    if artifact_missing():
        raise RuntimeError(MODEL_FILES_HINT)
    started = time.monotonic()
    latency = [hit_latency(mode) for mode in TOPOLOGIES]
    events = []
    for scenario in failover.SCENARIOS:
        row = failover.run_scenario(scenario, recovery_bound_s=RECOVERY_BOUND_S)
        print(f"  {row['fault']}: {row['requests']} requests, {row['non_200']} failed, {row['wrong']} wrong, "
              f"hits on every body after {row['all_hits_s']} s", flush=True)
        events.append(row)
    elapsed = time.monotonic() - started
    verdicts = {row["fault"]: check(row, recovery_bound_s=RECOVERY_BOUND_S) for row in events}
    passed = all(not failures for failures in verdicts.values())
    latency_rows = [[row["mode"], row["predict"]["p50_us"], row["predict"]["p99_us"], row["raw_get"]["p50_us"],
                     row["raw_get"]["p99_us"], f"{row['p50_ratio_vs_raw_get']}x"] for row in latency]
    event_rows = [[row["fault"], row["description"], row["requests"], row["non_200"], row["wrong"],
                   f"{row['max_latency_ms']:.0f}", f"{row['event_s']:.1f}",
                   "-" if row["hit_share_during_event"] is None else f"{row['hit_share_during_event']:.1%}",
                   "-" if row["all_hits_s"] is None else f"{row['all_hits_s']:.2f}",
                   ", ".join(f"{kind} {count}" for kind, count in sorted(row["errors_counted"].items())) or "none",
                   "PASS" if not verdicts[row["fault"]] else "FAIL"] for row in events]
    markdown = (
        "## Hit latency by topology (µs)\n\n"
        f"`decorator.predict` hits on {KEYS} cached inputs, interleaved with a raw redis-py GET of the same keys "
        "through redis-py's own client for that topology (`Redis`, `Sentinel.master_for`, `RedisCluster`), "
        f"{ITERATIONS} each; all processes on loopback.\n\n"
        + markdown_table(["topology", "predict p50", "predict p99", "raw GET p50", "raw GET p99", "p50 / raw GET"],
                         latency_rows)
        + "\n\n## Failover and resharding under HTTP load\n\n"
        "The model service (example config, real model) on a Sentinel deployment (primary + replica + 3 "
        "Sentinels, down-after 1 s) or a 3 x 1 Redis Cluster (node timeout 1 s); 4 client threads send 50 "
        "distinct bodies in a loop; every 200 answer is compared with the model's own. \"event s\" is how long "
        "the event itself took (a kill returns at once; the reshard moves 2000 slots with their keys under load), "
        "\"hits during\" the share of hits among requests started during it, \"all hit s\" the seconds from its "
        "end (for a kill: the moment the primary died) to hits on every body again.\n\n"
        + markdown_table(["event", "what happens", "requests", "failed", "wrong", "max ms", "event s",
                          "hits during", "all hit s", "counted", "verdict"], event_rows)
        + f"\n\nTargets: 0 failed, 0 wrong, every body hit again within {RECOVERY_BOUND_S:g} s, no request over "
        f"5 s: {'met' if passed else 'NOT met'}. Run time {elapsed:.0f} s.\n")
    data = {"latency": latency, "events": events, "verdicts": verdicts, "targets_met": passed,
            "recovery_bound_s": RECOVERY_BOUND_S, "run_time_s": round(elapsed, 1)}
    write_results(NAME, data, markdown)
    print(markdown)
    if not passed:
        raise RuntimeError(f"topology targets not met: { {k: v for k, v in verdicts.items() if v} }")
    return data


if __name__ == "__main__":
    main()
