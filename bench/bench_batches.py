"""Batches, stampedes and expiry benchmark, against one local redis-server:

1. Per-row caching: a 100-row batch with 0 / 50 / 100 % of its rows cached, through the decorator's
   per-row path, side by side with the same rows looked up one GET each (what a whole-request cache
   would have to do per row), and with no cache (the model on all 100 rows). Rows the model saw, Redis
   round trips per batch (INFO commandstats), p50 latency.
2. Single-flight across processes: 64 concurrent identical misses spread over 4 processes, with and
   without `shared_single_flight` (target: 1 model call; in-process single-flight alone gives 4).
3. Stale-while-revalidate: 32 concurrent callers at a hot key's expiry (model 0.5 s): the slowest
   caller and the model calls (target: no caller waits for the model, 1 refresh).
Writes bench/results/batches.{json,md}. Bounded: about half a minute.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import redis
from prometheus_client import REGISTRY

from bench.common import markdown_table, percentile, write_results
from cachedmodel import RedisCachingDecorator
from cachedmodel.freshness import unwrap
from cachedmodel.testing.insurance_like_model import Batch, BatchInsuranceLikeModel, sample_input
from cachedmodel.testing.processes import wait_until
from cachedmodel.testing.redis_server import RedisServer
from cachedmodel.testing.stampede import CountingModel, model_calls, stampede

NAME = "batches"
ROWS = 100
ROUNDS = 30
def _round_trips(client: redis.Redis) -> int:
    return sum(stats["calls"] for stats in client.info("commandstats").values())


def batch_rows(server: RedisServer) -> list[dict]:
    client = redis.Redis(port=server.port)
    results = []
    for cached_share in (0.0, 0.5, 1.0):
        timings = {"per-row path (MGET + pipelined SET)": [], "one GET per row": [], "no cache": []}
        rows_seen = {name: 0 for name in timings}
        trips = {name: 0 for name in timings}
        for round_number in range(ROUNDS):
            rows = [sample_input(age=18 + (round_number * ROWS + index) % 48, children=index % 6,
                                 bmi=15 + (round_number * 7919 + index) % 3500 / 100) for index in range(ROWS)]
            client.flushdb()
            model = BatchInsuranceLikeModel("bench_batch_model", version="1")
            decorator = RedisCachingDecorator(model, url=server.url, redis_info_interval_seconds=0,
                                              single_flight=False)
            single = RedisCachingDecorator(model.single, url=server.url, redis_info_interval_seconds=0,
                                           single_flight=False)
            warm = rows[:int(ROWS * cached_share)]
            if warm:
                decorator.predict(Batch(warm))
            for name in timings:
                model.calls.clear()
                if name != "per-row path (MGET + pipelined SET)":
                    client.flushdb()
                    if warm and name == "one GET per row":
                        decorator.predict(Batch(warm))  # the same entries (row keys = single keys)
                    model.calls.clear()
                before, single_calls = _round_trips(client), model.single.calls
                started = time.perf_counter()
                if name == "per-row path (MGET + pipelined SET)":
                    decorator.predict(Batch(rows))
                elif name == "one GET per row":
                    for row in rows:
                        single.predict(row)
                else:
                    model.predict(Batch(rows))
                timings[name].append(time.perf_counter() - started)
                trips[name] += _round_trips(client) - before - 1  # commands, minus INFO itself
                rows_seen[name] += (model.single.calls - single_calls) if name == "one GET per row" else model.rows_seen
            decorator.close(), single.close()
        for name, samples in timings.items():
            results.append({"cached_share": cached_share, "path": name,
                            "p50_ms": round(percentile(samples, 0.5) * 1000, 3),
                            "mean_ms": round(statistics.fmean(samples) * 1000, 3),
                            "model_rows_per_batch": round(rows_seen[name] / ROUNDS, 1),
                            "redis_commands_per_batch": round(trips[name] / ROUNDS, 1),
                            # the per-row path sends its SETs as one pipeline: 1 round trip, 2 with misses
                            "redis_round_trips_per_batch": (1 + (rows_seen[name] > 0)) if name.startswith("per-row")
                            else 0 if name == "no cache" else round(trips[name] / ROUNDS, 1)})
    client.close()
    return results


def stale_expiry(server: RedisServer, directory: str) -> dict:
    calls = str(Path(directory) / "stale-calls")
    decorator = RedisCachingDecorator(CountingModel(calls, delay_seconds=0.5, qualified_name="bench_stale_model"),
                                      url=server.url, ttl_seconds=1, stale_seconds=60, redis_info_interval_seconds=0)
    data = sample_input(age=40)
    decorator.predict(data)
    with redis.Redis(port=server.port) as client:
        fresh_until = unwrap(client.get(decorator.cache_key(data)))[1]
    wait_until(lambda: time.time() > fresh_until + 0.05, 5, what="the entry to go stale")
    latencies, barrier = [], threading.Barrier(32)

    def caller():
        barrier.wait(10)
        started = time.perf_counter()
        decorator.predict(data)
        latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=caller) for _ in range(32)]
    [thread.start() for thread in threads]
    [thread.join(20) for thread in threads]
    wait_until(lambda: (REGISTRY.get_sample_value("cachedmodel_cache_refreshes_total",
                                                  {"model": "bench_stale_model"}) or 0) >= 1, 10,
               what="the background refresh stored")
    decorator.close()
    return {"callers": 32, "model_seconds": 0.5, "slowest_caller_ms": round(max(latencies) * 1000, 1),
            "refresh_model_calls": model_calls(calls) - 1}


def main() -> dict:
    started = time.monotonic()
    with RedisServer() as server, tempfile.TemporaryDirectory() as directory:
        rows = batch_rows(server)
        flights = {shared: stampede(server.url, str(Path(directory) / f"calls-{shared}"), processes=4, threads=16,
                                    delay=0.3, age=30 + shared, shared_single_flight=shared)  # distinct keys
                   for shared in (False, True)}
        stale = stale_expiry(server, directory)
    elapsed = time.monotonic() - started
    by = {(row["cached_share"], row["path"]): row for row in rows}
    batch_table = markdown_table(
        ["cached rows", "path", "p50 ms", "model rows per batch", "Redis commands per batch",
         "Redis round trips per batch"],
        [[f"{row['cached_share']:.0%}", row["path"], row["p50_ms"],
          row["model_rows_per_batch"],
          row["redis_commands_per_batch"], row["redis_round_trips_per_batch"]] for row in rows])
    flight_table = markdown_table(
        ["shared_single_flight", "requests", "wrong", "model calls", "slowest ms"],
        [[shared, result.requests, result.wrong, result.model_calls, round(result.max_latency_s * 1000)]
         for shared, result in flights.items()])
    targets = {"shared_single_flight_one_call": flights[True].model_calls == 1,
               "stale_no_caller_waits": stale["slowest_caller_ms"] < 500 and stale["refresh_model_calls"] == 1}
    markdown = (
        f"## Per-row caching of a {ROWS}-row batch ({ROUNDS} batches per cell, distinct rows)\n\n"
        "\"per-row path\" is the decorator on a `RootModel[list[Row]]` model; \"one GET per row\" the same rows "
        "through the single-row decorator one by one (a whole-request cache cannot reuse rows at all); \"no "
        "cache\" the model alone (a formula here: real models cost far more than these lookups). Model rows: rows "
        "the model was called with per batch; commands from `INFO commandstats`; the per-row path sends one MGET "
        "and one pipeline of SETs.\n\n" + batch_table
        + "\n\n## 64 concurrent identical misses over 4 processes (16 threads each, model 0.3 s)\n\n" + flight_table
        + f"\n\n## Hot key expiry with stale-while-revalidate\n\n{stale['callers']} concurrent callers when the "
        f"entry went stale (ttl 1 s, stale 60 s, model {stale['model_seconds']} s): slowest caller "
        f"**{stale['slowest_caller_ms']} ms**, background refresh model calls **{stale['refresh_model_calls']}**.\n\n"
        f"Targets: 1 model call across processes with the lease ({'met' if targets['shared_single_flight_one_call'] else 'NOT met'}); "
        f"no caller waits for the model at expiry, one refresh ({'met' if targets['stale_no_caller_waits'] else 'NOT met'}). "
        f"Run time {elapsed:.0f} s.\n")
    data = {"batch_rows": rows, "batch_index": {f"{share}|{path}": row["p50_ms"] for (share, path), row in by.items()},
            "shared_single_flight": {str(shared).lower(): vars(result) for shared, result in flights.items()},
            "stale_while_revalidate": stale, "targets_met": targets, "run_time_s": round(elapsed, 1)}
    write_results(NAME, data, markdown)
    print(markdown)
    return data


if __name__ == "__main__":
    main()
