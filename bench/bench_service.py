"""Service benchmark, side by side in one run (one uvicorn worker each, wrk on loopback):

  (a) stock rest-model-service (`uvicorn rest_model_service.main:app`) serving a no-op model,
  (b) our service (`python -m cachedmodel.service`) with the real model and no cache,
  (c) our service on cache hits (example config, Redis tier, every request a hit),
  (d) the floor of a hit: a bare ASGI app on the same uvicorn that reads the body, parses the JSON and
      does one redis.asyncio GET (bench/floor_app.py; its pool holds a connection per burst request).

Targets: (c) >= 1.0x the throughput of (a) — a hit costs no more than the stock service doing
nothing —, (c) >= 5x the throughput of (b), and (c) >= 0.85x the floor (d). (a), (c) and (d) run back to
back in each round, so each round's ratios compare the same machine state (this VM has slower and faster
spells minutes long); the median of the rounds' ratios counts.

Then the burst (issue 20): 1,000 concurrent connections (one POST each, `Connection: close`) over 50
bodies already in Redis, against (c) and against the floor (d), alternating, BURST_ROUNDS times: every
answer's status and x-cache, hits, misses, bypasses (pool_exhausted among them) and model calls from
/metrics, the seconds the whole burst took and its p99. Target: every request a hit, no model call, and
(c)'s burst within 2x the floor's seconds (median of the rounds' ratios).

Writes bench/results/service.{json,md}. Needs `wrk` (Debian package; `make setup` installs it).
Bounded: about three and a half minutes.
"""
from __future__ import annotations

import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

from bench.common import markdown_table, write_results
from cachedmodel.testing.burst import burst, difference, service_counters
from insurance_charges_model.workload import workload
from cachedmodel.testing.model_service import EXAMPLE_CONFIG, MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.redis_server import RedisServer, wait_until

NAME = "service"
DURATION_S = 8
WARMUP_S = 2
CONNECTIONS = 16
ROUNDS = 5
DISTINCT_BODIES = 200
BURST_CONNECTIONS = 1000
BURST_BODIES = 50
BURST_ROUNDS = 3
TARGETS = {"hit_vs_stock_noop_min": 1.0, "hit_vs_model_min": 5.0, "hit_vs_floor_min": 0.85,
           "burst_hit_share_min": 0.99, "burst_vs_floor_seconds_max": 2.0}
MODEL = "insurance_charges_model"
PATH = f"/api/models/{MODEL}/prediction"

WRK_SCRIPT = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_script(bodies: list[dict]) -> str:
    """Lua for wrk that POSTs the bodies in turn and prints one parseable RESULT line (pure)."""
    return WRK_SCRIPT % ", ".join("[==[" + json.dumps(body) + "]==]" for body in bodies)


def parse_wrk(output: str) -> dict:
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", output)
    if match is None:
        raise RuntimeError(f"no RESULT line in wrk output:\n{output}")
    requests, duration_us, status_errors, socket_errors, p50_us, p99_us = map(int, match.groups())
    return {"requests": requests, "rps": round(requests / (duration_us / 1e6), 1), "p50_ms": round(p50_us / 1000, 2),
            "p99_ms": round(p99_us / 1000, 2), "non_2xx": status_errors, "socket_errors": socket_errors}


def run_wrk(url: str, script: Path, seconds: int) -> dict:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse_wrk(result.stdout)


def measure(service: ModelService, script: Path) -> dict:
    run_wrk(service.url + PATH, script, WARMUP_S)
    stats = run_wrk(service.url + PATH, script, DURATION_S)
    if stats["non_2xx"] or stats["socket_errors"]:
        raise RuntimeError(f"errors under load: {stats}\n{service.logs()[-3000:]}")
    return stats


def cache_counters(service: ModelService) -> tuple[float, float]:
    text = httpx.get(service.url + "/metrics").text
    value = lambda name: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()  # noqa: E731
                             if line.startswith(name + "{"))
    return value("cachedmodel_cache_hits_total"), value("cachedmodel_cache_misses_total")


def per_round_ratio(ours: list[dict], theirs: list[dict]) -> float:
    """The median over rounds of ours/theirs req/s, each round's pair measured back to back (pure)."""
    return statistics.median(mine["rps"] / other["rps"] for mine, other in zip(ours, theirs, strict=True))


def measure_burst(service: ModelService, bodies: list[dict], counted: bool) -> dict:
    """One burst of BURST_CONNECTIONS concurrent connections over `bodies`; with `counted`, the service's
    cache counters around it (the floor app has none)."""
    before = service_counters(service.url, MODEL) if counted else {}
    stats = burst(service.port, PATH, bodies, BURST_CONNECTIONS, timeout=30.0, deadline=90.0).summary()
    if counted:
        counts = difference(service_counters(service.url, MODEL), before)
        stats.update({name: int(counts.get(key, 0)) for name, key in (
            ("counted", "requests"), ("hits", "hits"), ("misses", "misses"), ("bypasses", "bypasses"),
            ("pool_exhausted", "bypass_pool_exhausted"), ("model_calls", "model_calls"))})
    return stats


def open_files(wanted: int) -> None:
    """Raise the soft limit of open files (the services started later inherit it) for the burst."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def floor_key(server: RedisServer) -> str:
    """One cached entry's key, so the floor app GETs a value of the real size."""
    import redis

    with redis.Redis(port=server.port) as client:
        return next(key.decode() for key in client.scan_iter(count=1000))


def write_config(directory: Path, name: str, model_class: str, cached: bool) -> Path:
    document = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    model = document["models"][0]
    model["class_path"] = model_class
    if not cached:
        model.pop("decorators", None)
    document.pop("logging", None)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def main() -> dict:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: `make setup` installs it (Debian package wrk)")
    if artifact_missing():
        raise RuntimeError(MODEL_FILES_HINT)
    bodies = workload(DISTINCT_BODIES, repeat_share=0.0, seed=11)
    uncached_bodies = workload(4000, repeat_share=0.0, seed=12)
    open_files(BURST_CONNECTIONS * 2 + 1024)
    with tempfile.TemporaryDirectory(prefix="cachedmodel-bench-") as tmp, RedisServer() as redis_server:
        tmp_path = Path(tmp)
        hits_script, miss_script = tmp_path / "hits.lua", tmp_path / "misses.lua"
        hits_script.write_text(wrk_script(bodies))
        miss_script.write_text(wrk_script(uncached_bodies))
        stock = ModelService(config=write_config(tmp_path, "stock", "bench.noop_model.NoopModel", cached=False))
        stock.command = [sys.executable, "-m", "uvicorn", "rest_model_service.main:app", "--host", "127.0.0.1",
                         "--port", str(stock.port), "--no-access-log"]
        model = ModelService(config=write_config(tmp_path, "model", "insurance_charges_model.model."
                                                 "InsuranceChargesModel", cached=False))
        cached = ModelService(config=EXAMPLE_CONFIG, env={"REDIS_URL": redis_server.url})
        floor = ModelService(env={"REDIS_URL": redis_server.url,
                                  "REDIS_FLOOR_MAX_CONNECTIONS": str(BURST_CONNECTIONS)})
        floor.command = [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--host", "127.0.0.1",
                         "--port", str(floor.port), "--no-access-log", "--no-server-header"]
        services = (stock, model, cached)
        runs: dict[str, list[dict]] = {"a": [], "b": [], "c": [], "d": []}
        bursts: dict[str, list[dict]] = {"c": [], "d": []}
        try:
            for service in services:
                service.start()
            with httpx.Client(base_url=cached.url, timeout=10) as client:  # warm the cache: every body once
                for body in bodies:
                    client.post(PATH, json=body).raise_for_status()
            floor.env["REDIS_FLOOR_KEY"] = floor_key(redis_server)  # a real entry of the same size
            floor.start(wait_ready=False)
            wait_until(lambda: httpx.post(floor.url + "/", content=b"{}").status_code == 200, 30, what="the floor app")
            services = (*services, floor)
            hits_before, misses_before = cache_counters(cached)
            for round_number in range(ROUNDS):
                print(f"  round {round_number + 1}/{ROUNDS}: (a) stock no-op ...", flush=True)
                runs["a"].append(measure(stock, hits_script))
                print(f"  round {round_number + 1}/{ROUNDS}: (c) our service, cache hits ...", flush=True)
                runs["c"].append(measure(cached, hits_script))
                print(f"  round {round_number + 1}/{ROUNDS}: (d) the floor: body, JSON, one GET ...", flush=True)
                runs["d"].append(measure(floor, hits_script))
            print("  (b) our service, real model, uncached ...", flush=True)
            runs["b"].append(measure(model, miss_script))
            hits_after, misses_after = cache_counters(cached)
            for round_number in range(BURST_ROUNDS):  # bodies[:BURST_BODIES] are cached (warmed above)
                print(f"  burst {round_number + 1}/{BURST_ROUNDS}: {BURST_CONNECTIONS} connections, (c) then (d) ...",
                      flush=True)
                bursts["c"].append(measure_burst(cached, bodies[:BURST_BODIES], counted=True))
                bursts["d"].append(measure_burst(floor, bodies[:BURST_BODIES], counted=False))
        finally:
            for service in services:
                service.cleanup()
    if misses_after != misses_before:
        raise RuntimeError(f"(c) was not all hits: {misses_after - misses_before:.0f} misses")
    best = {key: max(values, key=lambda stats: stats["rps"]) for key, values in runs.items()}
    # (a), (c) and (d) run back to back in each round: the ratio of a round is immune to the VM's slower
    # and faster spells (minutes long here), and the median of the rounds' ratios counts
    ratios = {"hit_vs_stock_noop": round(per_round_ratio(runs["c"], runs["a"]), 2),
              "hit_vs_model": round(best["c"]["rps"] / best["b"]["rps"], 2),
              "hit_vs_floor": round(per_round_ratio(runs["c"], runs["d"]), 2)}
    burst_ratio = statistics.median(ours["seconds"] / floor_run["seconds"]
                                    for ours, floor_run in zip(bursts["c"], bursts["d"], strict=True))
    ratios["burst_vs_floor_seconds"] = round(burst_ratio, 2)
    burst_totals = {name: sum(run[name] for run in bursts["c"])
                    for name in ("requests", "ok", "counted", "hits", "misses", "bypasses", "pool_exhausted",
                                 "model_calls")}
    burst_hit_share = burst_totals["hits"] / burst_totals["requests"]
    met = {"hit_vs_stock_noop": ratios["hit_vs_stock_noop"] >= TARGETS["hit_vs_stock_noop_min"],
           "hit_vs_model": ratios["hit_vs_model"] >= TARGETS["hit_vs_model_min"],
           "hit_vs_floor": ratios["hit_vs_floor"] >= TARGETS["hit_vs_floor_min"],
           "burst_hits": (burst_hit_share >= TARGETS["burst_hit_share_min"] and burst_totals["model_calls"] == 0
                          and burst_totals["pool_exhausted"] == 0 and burst_totals["ok"] == burst_totals["requests"]),
           "burst_vs_floor": ratios["burst_vs_floor_seconds"] <= TARGETS["burst_vs_floor_seconds_max"]}
    labels = {"a": "(a) stock rest-model-service, no-op model", "b": "(b) our service, real model, no cache",
              "c": "(c) our service, cache hits (Redis)", "d": "(d) floor: body + JSON + one redis.asyncio GET"}
    rows = [[labels[k], f"{best[k]['rps']:.0f}", f"{best[k]['p50_ms']:.2f}", f"{best[k]['p99_ms']:.2f}",
             f"{best[k]['rps'] / best['a']['rps']:.2f}x"] for k in ("a", "b", "c", "d")]
    markdown = (
        f"One uvicorn worker per service, wrk -t1 -c{CONNECTIONS} on loopback, {DURATION_S} s per run after "
        f"{WARMUP_S} s warm-up; (a), (c), (d) back to back in each of {ROUNDS} rounds, best round shown, "
        f"ratios the median of the rounds' ratios; "
        f"{DISTINCT_BODIES} distinct bodies for (a)/(c) (all hits for (c): "
        f"{hits_after - hits_before:.0f} hits, 0 misses), 4,000 distinct for (b).\n\n"
        + markdown_table(["service", "req/s", "p50 ms", "p99 ms", "vs (a)"], rows)
        + f"\n\n(c)/(a) = **{ratios['hit_vs_stock_noop']:.2f}x** (target >= {TARGETS['hit_vs_stock_noop_min']}x, "
        f"{'met' if met['hit_vs_stock_noop'] else 'NOT met'}); (c)/(b) = **{ratios['hit_vs_model']:.1f}x** "
        f"(target >= {TARGETS['hit_vs_model_min']}x, {'met' if met['hit_vs_model'] else 'NOT met'}); "
        f"(c)/(d) = **{ratios['hit_vs_floor']:.2f}x** of the floor (target >= {TARGETS['hit_vs_floor_min']}x, "
        f"{'met' if met['hit_vs_floor'] else 'NOT met'}).\n"
        + burst_markdown(bursts, burst_totals, ratios["burst_vs_floor_seconds"], met))
    data = {"config": {"duration_s": DURATION_S, "warmup_s": WARMUP_S, "connections": CONNECTIONS, "rounds": ROUNDS,
                       "distinct_bodies": DISTINCT_BODIES, "burst_connections": BURST_CONNECTIONS,
                       "burst_bodies": BURST_BODIES, "burst_rounds": BURST_ROUNDS},
            "runs": runs, "best": best, "ratios": ratios, "targets": TARGETS, "targets_met": met,
            "cache": {"hits": hits_after - hits_before, "misses": misses_after - misses_before},
            "burst": {"runs": bursts, "totals": burst_totals, "hit_share": round(burst_hit_share, 4)}}
    write_results(NAME, data, markdown)
    print(markdown)
    return data


def burst_markdown(bursts: dict, totals: dict, ratio: float, met: dict) -> str:
    """The burst section of the results (pure)."""
    rows = []
    for number, (ours, floor_run) in enumerate(zip(bursts["c"], bursts["d"]), start=1):
        rows.append([f"{number}: (c) our service", ours["requests"], ours["ok"], ours["hits"], ours["misses"],
                     ours["bypasses"], ours["pool_exhausted"], ours["model_calls"], f"{ours['seconds']:.2f}",
                     f"{ours['p99_ms']:.0f}"])
        rows.append([f"{number}: (d) floor", floor_run["requests"], floor_run["ok"], "", "", "", "", "",
                     f"{floor_run['seconds']:.2f}", f"{floor_run['p99_ms']:.0f}"])
    return (
        f"\n## Burst: {BURST_CONNECTIONS} concurrent connections over {BURST_BODIES} cached bodies\n\n"
        f"One POST per connection (`Connection: close`), all started at once, client timeout 30 s; (c) then (d), "
        f"{BURST_ROUNDS} rounds; hits, misses, bypasses and model calls from (c)'s /metrics around each burst; "
        f"seconds = the whole burst, first connect to last answer.\n\n"
        + markdown_table(["round", "requests", "200", "hits", "misses", "bypasses", "pool_exhausted",
                          "model calls", "seconds", "p99 ms"], rows)
        + f"\n\n(c): {totals['hits']:,} hits of {totals['requests']:,} requests, {totals['pool_exhausted']} "
        f"pool_exhausted, {totals['model_calls']} model calls (target: >= 99 % hits, none of either, "
        f"{'met' if met['burst_hits'] else 'NOT met'}); (c)/(d) burst seconds = **{ratio:.2f}x** "
        f"(median of the rounds; target <= {TARGETS['burst_vs_floor_seconds_max']}x, "
        f"{'met' if met['burst_vs_floor'] else 'NOT met'}).\n")


if __name__ == "__main__":
    main()
