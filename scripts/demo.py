"""`make demo`: a real redis-server and the model service on loopback, a realistic workload, a table.

Starts redis-server (maxmemory 64mb, allkeys-lru) and `python -m cachedmodel.service` (the image's
command) with the example config on free loopback ports, sends 2,000 prediction requests (about
half repeat an earlier request), then prints model latency (misses) against cache-hit latency over
HTTP, the hit ratio and Redis memory per entry — and stops everything it started, also on Ctrl-C
or failure. Options: --requests, --repeat-share, --seed, --time-limit.
"""
from __future__ import annotations

import argparse
import itertools
import math
import signal
import sys
import time

import httpx
import redis

from insurance_charges_model.workload import workload
from cachedmodel.testing.model_service import MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.redis_server import RedisServer


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (pure); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered) - 1e-9)))  # rank = ceil(share * n)
    return ordered[rank - 1]


def summary_table(misses: list[float], hits: list[float], memory: dict, sent: int, seconds: float,
                  server: dict) -> str:
    """The result table (pure). Latencies in seconds."""
    ms = lambda s: f"{s * 1000:8.2f} ms"  # noqa: E731
    p50_miss, p50_hit = percentile(misses, 0.5), percentile(hits, 0.5)
    lines = [
        "",
        f"{'':32}{'p50':>11}{'p99':>12}{'requests':>10}",
        f"{'model (cache miss) over HTTP':32}{ms(p50_miss):>11}{ms(percentile(misses, 0.99)):>12}{len(misses):>10}",
        f"{'cache hit over HTTP':32}{ms(p50_hit):>11}{ms(percentile(hits, 0.99)):>12}{len(hits):>10}",
        "",
        f"{'hit is faster by (p50)':32}{(p50_miss / p50_hit if p50_hit else 0):10.1f}x",
        f"{'hit ratio':32}{(len(hits) / sent * 100 if sent else 0):10.1f} %   ({len(hits)} of {sent} requests; "
        f"server counters: {server['hits']:.0f} hits, {server['misses']:.0f} misses)",
        f"{'Redis memory per entry':32}{memory['sampled']:8.0f} B   (MEMORY USAGE, mean of {memory['samples']} keys; "
        f"used_memory_dataset grew {memory['delta'] / 1024:.1f} KiB for {memory['keys']} keys = "
        f"{memory['per_entry']:.0f} B/key with hash-table growth)",
        f"{'throughput (sequential client)':32}{(sent / seconds if seconds else 0):10.0f} req/s  ({seconds:.1f} s in all)",
    ]
    return "\n".join(lines)


def _progress(done: int, total: int, hits: int, started: float, final: bool = False) -> None:
    if sys.stdout.isatty():
        end = "\n" if final else ""
        print(f"\r  sent {done:5d}/{total}  hits {hits:5d}  {time.monotonic() - started:5.1f} s", end=end, flush=True)
    elif (done % 500 == 0) != final:  # every 500 while running; at the end only if not just printed
        print(f"  sent {done}/{total}, hits {hits}, {time.monotonic() - started:.1f} s", flush=True)


def server_counters(client: httpx.Client) -> dict:
    counts = {"hits": 0.0, "misses": 0.0}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("cachedmodel_cache_hits_total{"):
            counts["hits"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("cachedmodel_cache_misses_total{"):
            counts["misses"] += float(line.rsplit(" ", 1)[1])
    return counts


def redis_memory(store: redis.Redis, baseline: int, sample: int = 50) -> dict:
    keys = store.dbsize()
    delta = store.info("memory")["used_memory_dataset"] - baseline
    sampled = [store.memory_usage(key) or 0 for key in itertools.islice(store.scan_iter(count=sample), sample)]
    return {"keys": keys, "delta": delta, "per_entry": delta / keys if keys else 0.0, "samples": len(sampled),
            "sampled": sum(sampled) / len(sampled) if sampled else 0.0}


def run(requests: int, repeat_share: float, seed: int, time_limit: float) -> int:
    if artifact_missing():
        print(MODEL_FILES_HINT, file=sys.stderr)
        return 2
    bodies = workload(requests, repeat_share, seed)
    redis_server = service = None
    try:
        redis_server = RedisServer(extra_args=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]).start()
        print(f"redis-server    127.0.0.1:{redis_server.port} (maxmemory 64mb, allkeys-lru)")
        started = time.monotonic()
        service = ModelService(env={"REDIS_URL": redis_server.url}).start()
        print(f"model service   {service.url}  (python -m cachedmodel.service, example config; "
              f"ready in {time.monotonic() - started:.1f} s)")
        store = redis.Redis.from_url(redis_server.url)
        baseline = store.info("memory")["used_memory_dataset"]  # data only: no client buffers
        print(f"workload        {requests} POST /api/models/insurance_charges_model/prediction, "
              f"~{repeat_share:.0%} repeats, seed {seed}, one client on loopback")

        misses, hits = [], []
        with httpx.Client(base_url=service.url, timeout=10.0) as client:
            started = time.monotonic()
            for done, body in enumerate(bodies, 1):
                sent_at = time.perf_counter()
                response = client.post(service.prediction_url(), json=body)
                elapsed = time.perf_counter() - sent_at
                if response.status_code != 200:
                    raise RuntimeError(f"request {done} failed: {response.status_code} {response.text}")
                (hits if response.headers.get("x-cache") == "hit" else misses).append(elapsed)
                if done % 50 == 0:
                    _progress(done, requests, len(hits), started)
                if time.monotonic() - started > time_limit:
                    print(f"\n  time limit of {time_limit:.0f} s reached: stopping the workload early")
                    break
            seconds = time.monotonic() - started
            _progress(len(hits) + len(misses), requests, len(hits), started, final=True)
            counters = server_counters(client)
        print(summary_table(misses, hits, redis_memory(store, baseline), len(hits) + len(misses), seconds, counters))
        return 0
    finally:
        print("\nstopping the model service and redis-server ...", end=" ", flush=True)
        if service is not None:
            service.cleanup()
        if redis_server is not None:
            redis_server.stop()
        print("done")


def _interrupt(signum, frame):
    """SIGTERM stops the demo like Ctrl-C: through the `finally` that stops what it started."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CachedModel demo: cache misses vs hits over HTTP.")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds for the workload at most")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (background job)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args.requests, args.repeat_share, args.seed, args.time_limit)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
