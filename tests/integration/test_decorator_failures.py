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


# ---------------------------------------------------------------- bounded pools (issue 9)
def bypasses(model, reason="pool_exhausted"):
    return metric("cachedmodel_cache_bypass_total", model=model, reason=reason)


def all_errors(model):
    return sum(errors(model, kind) for kind in ("connection", "timeout", "oom", "response", "auth", "decode",
                                                "encode", "other"))


def clients(server) -> int:
    """Connections the server has open, not counting the one asking."""
    with redis.Redis(port=server.port) as admin:
        return len(admin.client_list()) - 1


def run_threads(count, target):
    barrier = threading.Barrier(count)
    failures = []

    def run(index):
        try:
            barrier.wait(10)
            target(index)
        except Exception as error:  # noqa: BLE001
            failures.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    assert not failures, failures


def test_a_thread_burst_bigger_than_the_pool_waits_for_a_connection_and_never_opens_the_circuit(redis_server):
    """max_connections bounds every sync connection (GETs and SETs); a full pool waits briefly for a free
    connection: it is not a Redis failure (it used to count as a connection error and open the circuit)."""
    name = "sync_pool_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=2, pool_timeout=2.0)
    inputs = [sample_input(age=20 + i) for i in range(10)]

    def work(index):
        for round_ in range(25):
            data = inputs[(index + round_) % 10]
            assert decorator.predict(data) == model.predict(data)

    run_threads(8, work)
    assert all_errors(name) == 0 and bypasses(name) == 0
    assert decorator.circuit_state == "closed"
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") > 0
    assert clients(redis_server) <= 2
    decorator.close()


def test_an_async_burst_bigger_than_the_pool_waits_for_a_connection(redis_server):
    """The redis.asyncio pool is bounded too (it grew to 110 connections after a burst) and waits."""
    import asyncio

    name = "async_pool_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=3, pool_timeout=2.0)
    data = sample_input()
    decorator.predict(data)  # stored, over one sync connection
    sync_connections = clients(redis_server)

    async def burst():
        try:
            outputs = await asyncio.gather(*(decorator.aget_cached(data) for _ in range(60)))
            return outputs, clients(redis_server)  # before aclose() closes them
        finally:
            await decorator.aclose()

    outputs, connections = asyncio.run(burst())
    assert all(output == model.predict(data) for output in outputs)
    assert all_errors(name) == 0 and bypasses(name) == 0 and decorator.circuit_state == "closed"
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 60
    assert connections - sync_connections <= 3
    decorator.close()


def test_pools_are_bounded_by_default(redis_server):
    """Without max_connections the async pool grew to one connection per concurrent lookup (110 after a
    burst): every pool now has a bound by default (50, redis-py's BlockingConnectionPool default)."""
    import asyncio

    name = "default_bound_model"
    model = InsuranceLikeModel(qualified_name=name)
    # generous timeouts: 50 connects at once on a busy test machine can exceed the 0.25 s default
    decorator = RedisCachingDecorator(model, url=redis_server.url, socket_connect_timeout=2.0, pool_timeout=5.0)
    assert decorator.options.max_connections == 50
    data = sample_input()
    decorator.predict(data)
    sync_connections = clients(redis_server)

    async def burst():
        try:
            outputs = await asyncio.gather(*(decorator.aget_cached(data) for _ in range(120)))
            return outputs, clients(redis_server)
        finally:
            await decorator.aclose()

    outputs, connections = asyncio.run(burst())
    assert all(output is not None for output in outputs) and all_errors(name) == 0
    assert connections - sync_connections <= 50, connections
    decorator.close()


def test_an_exhausted_pool_is_a_counted_bypass_and_never_trips_the_breaker(redis_server):
    """While the only connection is busy (Redis paused), other requests wait pool_timeout, then answer
    from the model without a Redis call: counted as bypasses, not failures; the circuit stays closed."""
    name = "exhausted_pool_model"
    model = InsuranceLikeModel(qualified_name=name)
    # socket_timeout outlasts the pause: the holder's GET is answered late, nothing fails
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=1, pool_timeout=0.05,
                                      socket_timeout=3.0, circuit_breaker_failures=1, circuit_breaker_reset_seconds=30)
    decorator.predict(sample_input())  # the one connection is open before the pause
    holder = threading.Thread(target=decorator.predict, args=(sample_input(age=60),))
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        try:
            holder.start()  # its GET waits for the pause: it holds the only connection
            # the holder took the one pooled connection: its GET is in flight
            wait_until(lambda: not decorator._backend._idle, timeout=5, interval=0.005, what="GET in flight")
            assert decorator._backend.in_use == 1
            started = time.perf_counter()
            for age in range(20, 25):
                assert decorator.predict(sample_input(age=age)) == model.predict(sample_input(age=age))
            elapsed = time.perf_counter() - started
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    holder.join(10)
    assert bypasses(name) == 5
    assert all_errors(name) == 0 and decorator.circuit_state == "closed"
    assert elapsed < 0.9, elapsed  # five short waits, no socket timeouts
    decorator.close()


def test_an_exhausted_async_pool_is_a_counted_bypass(redis_server):
    import asyncio

    name = "exhausted_async_pool_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, max_connections=1, pool_timeout=0.05,
                                      circuit_breaker_failures=1, circuit_breaker_reset_seconds=30)
    data = sample_input()
    decorator.predict(data)

    async def lookups():
        pool = decorator._backend._async_lane().pool
        held = await pool.get_connection()  # the only async connection is busy
        try:
            missed = await decorator.aget_cached(data, remember_miss=True)
            # as the service's route does next: the model answers, and the request counts as that bypass
            assert decorator.predict(data) == model.predict(data)
        finally:
            await pool.release(held)
        try:
            return missed, await decorator.aget_cached(data)
        finally:
            await decorator.aclose()

    missed, hit = asyncio.run(lookups())
    assert missed is None and hit == model.predict(data)
    assert bypasses(name) == 1 and all_errors(name) == 0 and decorator.circuit_state == "closed"
    assert metric("cachedmodel_cache_requests_total", model=name) == 3  # the miss, the bypass, the hit
    decorator.close()


# ---------------------------------------------------------------- clean restart (issue 9)
def clean_restart(server):
    """SIGTERM (Redis closes every client socket on the way out), then the same port again, empty."""
    server.process.terminate()
    server.process.wait(timeout=10)
    server.start()


def test_a_clean_restart_does_not_count_dead_pooled_sockets_as_failures(redis_server):
    """A failure on a reused connection is retried once on a fresh one: the server is back, nothing failed."""
    name = "clean_restart_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, circuit_breaker_failures=1,
                                      circuit_breaker_reset_seconds=30,
                                      single_flight=False)  # no lingering result from before the restart
    data = sample_input()
    decorator.predict(data), decorator.predict(data)
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 1
    clean_restart(redis_server)
    assert decorator.predict(data) == model.predict(data)  # a miss: the new server is empty
    assert all_errors(name) == 0 and decorator.circuit_state == "closed"
    decorator.predict(data)
    assert metric("cachedmodel_cache_hits_total", model=name, tier="redis") == 2  # and the SET worked
    decorator.close()


def test_a_clean_restart_under_concurrent_requests_keeps_the_circuit_closed(redis_server):
    """The reported case: 4 concurrent requests on 4 pooled sockets after a restart gave 3 errors and an
    open circuit."""
    name = "clean_restart_concurrent_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, circuit_breaker_failures=3,
                                      circuit_breaker_reset_seconds=30)
    inputs = [sample_input(age=20 + i) for i in range(4)]

    def four_pooled_connections():
        run_threads(4, lambda index: [decorator.predict(inputs[index]) for _ in range(20)])
        return len(decorator._backend._idle) >= 4

    wait_until(four_pooled_connections, timeout=20, interval=0, what="4 pooled connections")
    clean_restart(redis_server)
    run_threads(4, lambda index: decorator.predict(inputs[index]))
    assert all_errors(name) == 0 and decorator.circuit_state == "closed"
    decorator.close()


def test_a_clean_restart_does_not_fail_async_lookups(redis_server):
    import asyncio

    name = "clean_restart_async_model"
    model = InsuranceLikeModel(qualified_name=name)
    decorator = RedisCachingDecorator(model, url=redis_server.url, circuit_breaker_failures=1,
                                      circuit_breaker_reset_seconds=30)
    data = sample_input()
    decorator.predict(data)

    async def around_a_restart():
        try:
            before = await asyncio.gather(*(decorator.aget_cached(data) for _ in range(4)))
            await asyncio.get_running_loop().run_in_executor(None, clean_restart, redis_server)
            after = await asyncio.gather(*(decorator.aget_cached(data) for _ in range(4)))
            return before, after
        finally:
            await decorator.aclose()

    before, after = asyncio.run(around_a_restart())
    assert all(output is not None for output in before) and after == [None] * 4  # empty after the restart
    assert all_errors(name) == 0 and decorator.circuit_state == "closed"
    decorator.close()


# ---------------------------------------------------------------- no secrets (issue 9)
def test_no_password_in_logs_errors_or_reprs(redis_server_factory, caplog):
    secret = "wr0ng-hunter2-pw"
    server = redis_server_factory(password="right-password")
    name = "secret_model"
    url = f"redis://admin:{secret}@127.0.0.1:{server.port}/0"
    caplog.set_level("DEBUG")
    decorator = RedisCachingDecorator(InsuranceLikeModel(qualified_name=name), url=url, password=secret,
                                      circuit_breaker_failures=1)
    for age in range(20, 23):
        decorator.predict(sample_input(age=age))
    assert errors(name, "auth") >= 1 and decorator.circuit_state == "open"
    shown = [caplog.text, repr(decorator), repr(decorator.options), str(decorator.options)]
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever it is, its message is clean
        RedisCachingDecorator(url=url.replace("/0", "/zero"))
    shown.append(str(caught.value))
    try:
        decorator._backend.ping()
    except Exception as error:  # noqa: BLE001
        shown.append(str(error))
    for text in shown:
        assert secret not in text, text
    decorator.close()
