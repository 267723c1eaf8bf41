"""A burst stays a hit (issue 20): busy connections of our own never send a cached request to the model.

In process, against a real redis-server (and a real Redis Cluster): concurrent async lookups are
coalesced into a few MGETs on one connection, identical keys share one read, a lookup that finds every
connection busy waits (up to socket_timeout) instead of bypassing, a failed read fails every waiter of
its batch as a counted error (never a hang), a cancelled waiter does not break its batch, a busy event
loop is not taken for a slow Redis, and sync callers (single and batch predictions, Cluster node pools)
wait for a connection too. Pool exhaustion stays a counted
bypass, out of the breaker, when the wait really runs out.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import RootModel

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import (BatchInsuranceLikeModel, InsuranceInput, InsuranceLikeModel,
                                                      sample_input)
from cachedmodel.testing.redis_server import wait_until
from cachedmodel.testing.redis_topologies import ClusterDeployment

pytestmark = pytest.mark.integration

ERROR_KINDS = ("connection", "timeout", "oom", "response", "auth", "decode", "encode", "other")


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def hits(model):
    return metric("cachedmodel_cache_hits_total", model=model, tier="redis")


def bypasses(model, reason):
    return metric("cachedmodel_cache_bypass_total", model=model, reason=reason)


def errors(model, kind=None):
    kinds = ERROR_KINDS if kind is None else (kind,)
    return sum(metric("cachedmodel_cache_errors_total", model=model, kind=k) for k in kinds)


def reads(server) -> int:
    """GET + MGET commands the server ran since its stats were reset."""
    with redis.Redis(port=server.port) as admin:
        stats = admin.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


def reset_stats(server) -> None:
    with redis.Redis(port=server.port) as admin:
        admin.config_resetstat()


def clients(server) -> int:
    with redis.Redis(port=server.port) as admin:
        return len(admin.client_list()) - 1


def pause(server, milliseconds: int) -> None:
    """CLIENT PAUSE: every client's commands wait (the server accepts, reads, and answers later)."""
    with redis.Redis(port=server.port) as admin:
        admin.execute_command("CLIENT", "PAUSE", str(milliseconds), "ALL")


def inputs(count: int) -> list[InsuranceInput]:
    return [sample_input(age=18 + index % 48, children=index // 48 % 6, bmi=20.0 + index // 288)
            for index in range(count)]


def test_concurrent_identical_lookups_share_one_read(redis_server):
    name = "coalesce_identical_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, redis_info_interval_seconds=0)
    data = sample_input()
    expected = decorator.predict(data)  # stored
    reset_stats(redis_server)

    async def burst():
        try:
            return await asyncio.gather(*(decorator.aget_cached(data) for _ in range(200)))
        finally:
            await decorator.aclose()

    outputs = asyncio.run(burst())
    assert all(output == expected for output in outputs)
    assert hits(name) == 200 and errors(name) == 0
    assert reads(redis_server) == 1  # (it was 200 GETs)
    decorator.close()


def test_a_burst_of_distinct_hits_is_a_few_mgets_on_one_connection(redis_server):
    name = "coalesce_distinct_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=4, redis_info_interval_seconds=0)
    cached = inputs(500)
    expected = [decorator.predict(data) for data in cached]
    calls = model.calls
    reset_stats(redis_server)
    sync_connections = clients(redis_server)

    async def burst():
        try:
            outputs = await asyncio.gather(*(decorator.aget_cached(cached[i % 500]) for i in range(2000)))
            return outputs, clients(redis_server) - sync_connections
        finally:
            await decorator.aclose()

    outputs, connections = asyncio.run(burst())
    assert outputs == [expected[i % 500] for i in range(2000)]
    assert hits(name) == 2000 and bypasses(name, "pool_exhausted") == 0 and errors(name) == 0
    assert model.calls == calls
    assert reads(redis_server) <= 10, reads(redis_server)  # one MGET per batch (it was 2,000 GETs)
    assert connections == 1
    decorator.close()


def test_busy_connections_mean_waiting_not_bypassing(redis_server):
    """The only connection is busy (Redis paused under it): the other lookups wait for it, up to
    socket_timeout, and are hits once Redis answers. They used to bypass to the model after pool_timeout."""
    name = "coalesce_wait_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=1, socket_timeout=3.0,
                                      circuit_breaker_failures=1, redis_info_interval_seconds=0)
    cached = inputs(20)
    expected = [decorator.predict(data) for data in cached]

    async def burst():
        try:
            assert await decorator.aget_cached(cached[0]) == expected[0]  # the lane's connection is open
            pause(redis_server, 400)
            started = time.perf_counter()
            outputs = await asyncio.gather(*(decorator.aget_cached(cached[i % 20]) for i in range(100)))
            return outputs, time.perf_counter() - started
        finally:
            await decorator.aclose()

    outputs, elapsed = asyncio.run(burst())
    assert outputs == [expected[i % 20] for i in range(100)]
    assert elapsed >= 0.3  # they did wait for the paused server
    assert bypasses(name, "pool_exhausted") == 0 and errors(name) == 0 and decorator.circuit_state == "closed"
    assert hits(name) == 101
    decorator.close()


def test_an_exhausted_wait_is_a_counted_bypass_and_never_a_breaker_failure(redis_server):
    """When no connection frees up within the wait (pool_timeout here; socket_timeout by default), the
    queued lookups bypass as pool_exhausted; the breaker does not count it."""
    name = "coalesce_exhausted_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=1, pool_timeout=0.05,
                                      circuit_breaker_failures=1, redis_info_interval_seconds=0)
    data = sample_input()
    decorator.predict(data)

    async def lookups():
        pool = decorator._backend._async_lane().pool
        held = await pool.get_connection()  # someone else holds the only connection of this loop's pool
        try:
            started = time.perf_counter()
            missed = await asyncio.gather(*(decorator.aget_cached(data, remember_miss=True) for _ in range(10)))
            waited = time.perf_counter() - started
        finally:
            await pool.release(held)
        try:
            return missed, waited, await decorator.aget_cached(data)
        finally:
            await decorator.aclose()

    missed, waited, hit = asyncio.run(lookups())
    assert missed == [None] * 10 and hit is not None
    assert 0.04 <= waited < 2.0, waited
    assert errors(name) == 0 and decorator.circuit_state == "closed"
    # aget_cached counts a miss or bypass only through the route's predict(); the lookups themselves
    # were not errors and did not trip the breaker (circuit_breaker_failures=1)
    assert hits(name) == 1
    decorator.close()


def test_a_failed_read_fails_every_waiter_as_a_counted_error_without_a_hang(redis_server):
    """A hung Redis (SIGSTOP): every waiter of the batches in flight and queued fails after one
    socket_timeout, each counted as a timeout error (one per request), none as pool_exhausted."""
    name = "coalesce_failure_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=2, socket_timeout=0.3,
                                      circuit_breaker_failures=10_000, redis_info_interval_seconds=0)
    cached = inputs(20)
    [decorator.predict(data) for data in cached]

    async def burst():
        try:
            await decorator.aget_cached(cached[0])  # the lane's connection is open
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            try:
                started = time.perf_counter()
                outputs = await asyncio.wait_for(
                    asyncio.gather(*(decorator.aget_cached(cached[i % 20]) for i in range(100))), 10)
                return outputs, time.perf_counter() - started
            finally:
                os.kill(redis_server.process.pid, signal.SIGCONT)
        finally:
            await decorator.aclose()

    outputs, elapsed = asyncio.run(burst())
    assert outputs == [None] * 100
    assert elapsed < 1.5, f"{elapsed:.2f}s: more than one 0.3 s timeout per request"
    assert errors(name, "timeout") == 100 and errors(name) == 100
    assert bypasses(name, "pool_exhausted") == 0
    with redis.Redis(port=redis_server.port, socket_timeout=5) as admin:
        wait_until(admin.ping, 10, what="redis-server to answer after SIGCONT")
    decorator.close()


def test_a_busy_event_loop_is_not_a_slow_redis(redis_server):
    """The event loop is blocked for longer than socket_timeout right after the GETs went out (as a burst
    of thousands of requests blocks it): the answers came in time and are served, not counted as
    timeouts. asyncio's wall-clock timeouts used to cancel such reads (9,997 timeout errors and an
    open breaker in a 10,000-connection burst)."""
    name = "coalesce_busy_loop_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, socket_timeout=0.2, circuit_breaker_failures=1,
                                      redis_info_interval_seconds=0)
    cached = inputs(10)
    expected = [decorator.predict(data) for data in cached]

    async def scenario():
        try:
            assert await decorator.aget_cached(cached[0]) == expected[0]  # the lane's connection is open
            lookups = [asyncio.ensure_future(decorator.aget_cached(data)) for data in cached]
            asyncio.get_running_loop().call_soon(time.sleep, 0.6)  # runs right after the lookups sent their GETs
            return await asyncio.wait_for(asyncio.gather(*lookups), 10)
        finally:
            await decorator.aclose()

    assert asyncio.run(scenario()) == expected
    assert errors(name) == 0 and decorator.circuit_state == "closed" and hits(name) == 11
    decorator.close()


def test_cancelling_one_waiter_does_not_break_the_batch(redis_server):
    """The request whose GET is in flight is cancelled, and so is one queued lookup: every other lookup
    of the same key and of the queued batch still gets its hit."""
    name = "coalesce_cancel_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, socket_timeout=3.0, redis_info_interval_seconds=0)
    cached = inputs(5)
    expected = [decorator.predict(data) for data in cached]

    async def scenario():
        try:
            assert await decorator.aget_cached(cached[0]) == expected[0]  # one idle connection
            pause(redis_server, 300)
            leader = asyncio.ensure_future(decorator.aget_cached(cached[1]))  # its GET goes out at once
            await asyncio.sleep(0.05)
            followers = [asyncio.ensure_future(decorator.aget_cached(cached[1])) for _ in range(5)]
            queued = [asyncio.ensure_future(decorator.aget_cached(cached[2 + i % 3])) for i in range(9)]
            await asyncio.sleep(0.05)
            leader.cancel()
            queued[0].cancel()
            results = await asyncio.wait_for(asyncio.gather(*followers, *queued[1:]), 5)
            assert leader.cancelled() and queued[0].cancelled()
            return results
        finally:
            await decorator.aclose()

    results = asyncio.run(scenario())
    assert results[:5] == [expected[1]] * 5
    assert results[5:] == [expected[2 + i % 3] for i in range(1, 9)]
    assert errors(name) == 0 and bypasses(name, "pool_exhausted") == 0
    decorator.close()


def test_sync_callers_wait_for_a_busy_connection(redis_server):
    """Threads (the route's predict, a library user's threads): with the only connection busy, the
    others block up to socket_timeout for it and hit; they used to bypass after pool_timeout (0.1 s)."""
    name = "coalesce_sync_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=1, socket_timeout=3.0,
                                      redis_info_interval_seconds=0)
    cached = inputs(6)
    expected = [decorator.predict(data) for data in cached]
    calls = model.calls
    outputs: dict[int, object] = {}

    def predict(index):
        outputs[index] = decorator.predict(cached[index])

    pause(redis_server, 400)
    holder = threading.Thread(target=predict, args=(0,))
    holder.start()
    wait_until(lambda: decorator._backend.in_use == 1, 5, interval=0.002, what="the GET in flight")
    others = [threading.Thread(target=predict, args=(index,)) for index in range(1, 6)]
    [thread.start() for thread in others]
    [thread.join(10) for thread in [holder, *others]]
    assert [outputs[index] for index in range(6)] == expected
    assert model.calls == calls  # all hits
    assert bypasses(name, "pool_exhausted") == 0 and errors(name) == 0 and hits(name) == 6
    decorator.close()


def test_batch_callers_wait_for_a_busy_connection(redis_server):
    name = "coalesce_batch_model"
    model = BatchInsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=1, socket_timeout=3.0,
                                      redis_info_interval_seconds=0)
    Batch = RootModel[list[InsuranceInput]]
    batches = [Batch(inputs(30)[index * 10:(index + 1) * 10]) for index in range(3)]
    expected = [decorator.predict(batch) for batch in batches]
    rows_computed = model.rows_seen
    outputs: dict[int, object] = {}

    def predict(index):
        outputs[index] = decorator.predict(batches[index])

    pause(redis_server, 400)
    holder = threading.Thread(target=predict, args=(0,))
    holder.start()
    wait_until(lambda: decorator._backend.in_use == 1, 5, interval=0.002, what="the MGET in flight")
    others = [threading.Thread(target=predict, args=(index,)) for index in (1, 2)]
    [thread.start() for thread in others]
    [thread.join(10) for thread in [holder, *others]]
    assert [outputs[index] for index in range(3)] == expected
    assert model.rows_seen == rows_computed  # every row a hit
    assert bypasses(name, "pool_exhausted") == 0 and errors(name) == 0 and hits(name) == 30
    decorator.close()


def test_cluster_lookups_are_coalesced_per_node_and_wait_for_busy_node_pools():
    """Redis Cluster, 2 connections per node. Async: a burst over keys of every shard goes as one MGET per
    slot pipelined per node; redis-py's asyncio cluster client used to raise MaxConnectionsError at once
    for every lookup beyond 2 in flight on a node (a pool_exhausted bypass). Sync: 12 threads share the
    node pools, waiting for a free connection; redis-py's sync cluster pools do not block either."""
    name = "coalesce_cluster_model"
    model = InsuranceLikeModel(qualified_name=name)
    with ClusterDeployment(shards=3, replicas_per_shard=0) as cluster:
        decorator = RedisCachingDecorator(model, cluster_nodes=cluster.addresses, max_connections=2,
                                          redis_info_interval_seconds=0)
        cached = inputs(300)
        expected = [decorator.predict(data) for data in cached]
        calls = model.calls

        async def burst():
            try:
                return await asyncio.gather(*(decorator.aget_cached(cached[i % 300]) for i in range(900)))
            finally:
                await decorator.aclose()

        outputs = asyncio.run(burst())
        assert outputs == [expected[i % 300] for i in range(900)]
        assert bypasses(name, "pool_exhausted") == 0 and errors(name) == 0 and hits(name) == 900
        assert model.calls == calls

        failures = []

        def work(offset):
            try:
                for step in range(30):
                    index = (offset * 30 + step) % 300
                    if decorator.predict(cached[index]) != expected[index]:
                        failures.append(index)
            except Exception as error:  # noqa: BLE001
                failures.append(error)

        threads = [threading.Thread(target=work, args=(offset,)) for offset in range(12)]
        [thread.start() for thread in threads]
        [thread.join(60) for thread in threads]
        assert not failures, failures[:5]
        assert bypasses(name, "pool_exhausted") == 0 and errors(name) == 0 and hits(name) == 900 + 360
        assert model.calls == calls
        decorator.close()
